// Jest runs the *compiled* tests (tsc -b emits test/**/*.ts to test/dist/**/*.js) as native
// ESM: no transform, started with `node --experimental-vm-modules` by scripts/test.mjs.
// Use `npm test` rather than invoking jest directly, so PostgreSQL/SoftHSM2 get set up.

/** @type {import('jest').Config} */
const config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test/dist'],
  testMatch: ['**/*.test.js'],
  transform: {},
  moduleFileExtensions: ['js', 'mjs', 'cjs', 'json'],
  // Hooks too: a beforeAll that starts a server process and seeds it through the CLI takes
  // minutes, not seconds, on a loaded 2-core runner (test/helpers/process.ts, START_TIMEOUT_MS).
  testTimeout: 300000,
  maxWorkers: 2,
  verbose: false,
  // Mocks/spies never leak between tests.
  restoreMocks: true,
  errorOnDeprecated: true,
};

export default config;
