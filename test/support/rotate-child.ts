// Child process for the "rotation killed mid-way" test: runs rotateMasterKey and, after the first
// committed batch, reports it on stdout and waits to be killed (SIGKILL, no clean-up of any kind).
import { createSecretsManager } from '../../src/index.js';

const manager = createSecretsManager({
  connectionString: process.env.CHILD_DATABASE_URL,
  masterKey: process.env.CHILD_MASTER_KEY,
  previousMasterKeys: [process.env.CHILD_PREVIOUS_KEY ?? ''],
  actor: 'child',
});
await manager.rotateMasterKey({
  batchSize: Number(process.env.CHILD_BATCH ?? '5'),
  onProgress: async ({ done, total }) => {
    process.stdout.write(`progress ${done}/${total}\n`);
    setInterval(() => undefined, 1000);
    await new Promise(() => undefined);
  },
});
