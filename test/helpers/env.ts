// Test environment helpers. `npm test` (scripts/test.mjs) provides:
//   COFFER_TEST_DATABASE_URL    superuser URL of a real (usually throwaway) PostgreSQL server
//   COFFER_TEST_SOFTHSM_MODULE  path to libsofthsm2.so (suites create their own tokens)
//   COFFER_TEST_SOFTHSM_UTIL    path to softhsm2-util
//   COFFER_TEST_STRICT=1        in CI: a missing dependency fails instead of skipping
//
// Jest globals (describe/it/expect/...) are used as globals; only the `jest` object itself
// needs `import { jest } from '@jest/globals'` in native ESM mode.

import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** True in CI (COFFER_TEST_STRICT=1, set by scripts/test.mjs): nothing may be skipped. */
export const strict: boolean = /^(1|true|yes)$/i.test(process.env.COFFER_TEST_STRICT ?? '');

/** Must match SKIP_MARKERS in scripts/test.mjs, which lists skipped suites in its summary. */
const SKIP_MARKER = {
  postgres: '[skipped: PostgreSQL unavailable]',
  softhsm: '[skipped: SoftHSM2 unavailable]',
} as const;

/** URL of the PostgreSQL server for tests (a superuser / CREATEDB role), if any. */
export function postgresUrl(): string | undefined {
  return process.env.COFFER_TEST_DATABASE_URL || undefined;
}

/** Path to the SoftHSM2 PKCS#11 module, if available. */
export function softHsmModule(): string | undefined {
  return process.env.COFFER_TEST_SOFTHSM_MODULE || undefined;
}

/** Path to softhsm2-util, if known (falls back to PATH lookup by the caller). */
export function softHsmUtil(): string {
  return process.env.COFFER_TEST_SOFTHSM_UTIL || 'softhsm2-util';
}

const warned = new Set<string>();

function describeIf(
  available: boolean,
  dep: keyof typeof SKIP_MARKER,
  what: string,
  howTo: string,
  name: string,
  fn: () => void,
): void {
  if (available) {
    describe(name, fn);
    return;
  }
  const reason = `${what} is not available: ${howTo}`;
  if (strict) {
    describe(name, () => {
      it(`requires ${what}`, () => {
        throw new Error(`${reason} (strict mode: COFFER_TEST_STRICT=1 / CI, suites may not be skipped)`);
      });
    });
    return;
  }
  if (!warned.has(dep)) {
    warned.add(dep);
    console.warn(`SKIPPING suites that need ${what}: ${reason}`);
  }
  describe.skip(`${name} ${SKIP_MARKER[dep]}`, fn);
}

/** `describe` that needs a real PostgreSQL (COFFER_TEST_DATABASE_URL). */
export function describeIfPostgres(name: string, fn: () => void): void {
  describeIf(
    postgresUrl() !== undefined,
    'postgres',
    'PostgreSQL',
    'run the tests via `npm test` with PostgreSQL installed (apt-get install postgresql / brew install postgresql@15) or set COFFER_TEST_DATABASE_URL',
    name,
    fn,
  );
}

/** `describe` that needs SoftHSM2 (COFFER_TEST_SOFTHSM_MODULE). */
export function describeIfSoftHsm(name: string, fn: () => void): void {
  describeIf(
    softHsmModule() !== undefined,
    'softhsm',
    'SoftHSM2',
    'run the tests via `npm test` with SoftHSM2 installed (apt-get install softhsm2 / brew install softhsm) or set SOFTHSM2_MODULE',
    name,
    fn,
  );
}

export interface TestDatabase {
  /** Connection URL of the new, empty database. */
  url: string;
  /** Database name (coffer_test_<hex>). */
  name: string;
  /** Drop the database, terminating any remaining connections. Idempotent. */
  drop(): Promise<void>;
}

async function withAdminClient<T>(f: (client: pg.Client) => Promise<T>): Promise<T> {
  const url = postgresUrl();
  if (!url) {
    throw new Error('COFFER_TEST_DATABASE_URL is not set; use describeIfPostgres() and run the tests via `npm test`');
  }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 15_000 });
  client.on('error', () => {
    /* connection dropped by the server; the pending query rejects instead */
  });
  await client.connect();
  try {
    return await f(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Create a fresh, uniquely named database on the test server. Each suite (or test) gets
 * its own, so suites can run in parallel workers. Call `drop()` in afterAll.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `coffer_test_${randomBytes(8).toString('hex')}`;
  await withAdminClient((c) => c.query(`CREATE DATABASE "${name}"`));
  const u = new URL(postgresUrl()!);
  u.pathname = `/${name}`;
  let dropped = false;
  return {
    url: u.toString(),
    name,
    async drop() {
      if (dropped) return;
      await withAdminClient((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
      dropped = true;
    },
  };
}
