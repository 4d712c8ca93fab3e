import { createSecretsManager, type SecretsManager } from './manager.js';

/**
 * The original three functions, configured from the environment (`DATABASE_URL`,
 * `TENANT_SECRETS_MASTER_KEY`, ...). They share one lazily created manager.
 */

let shared: SecretsManager | undefined;

/** The manager behind the env functions, created on first use from `process.env`. */
export function defaultSecretsManager(): SecretsManager {
  shared ??= createSecretsManager();
  return shared;
}

/** Closes the shared manager's pool (tests, graceful shutdown). The next call creates a new one. */
export async function closeDefaultSecretsManager(): Promise<void> {
  const current = shared;
  shared = undefined;
  await current?.close();
}

/**
 * Creates or replaces a tenant's secret.
 * @throws {InvalidInputError | ConfigurationError | DatabaseUnavailableError | IntegrityError | UnknownMasterKeyError}
 */
export async function setTenantSecret(tenantId: string, keyName: string, value: string): Promise<void> {
  await defaultSecretsManager().set(tenantId, keyName, value);
}

/**
 * Reads a tenant's secret. `null` only when it does not exist; every other failure throws.
 * @throws {InvalidInputError | ConfigurationError | DatabaseUnavailableError | IntegrityError | UnknownMasterKeyError | SecretExpiredError}
 */
export async function getTenantSecret(tenantId: string, keyName: string): Promise<string | null> {
  return defaultSecretsManager().get(tenantId, keyName);
}

/**
 * Replaces an existing secret with a new version; the value and its `secret.rotated` audit record
 * commit together.
 * @throws {SecretNotFoundError} when the secret does not exist.
 */
export async function rotateTenantSecret(tenantId: string, keyName: string, newValue: string): Promise<void> {
  await defaultSecretsManager().rotate(tenantId, keyName, newValue);
}
