// The storage backends the contract suites run on (like OpenBao's physical.ExerciseBackend: one
// set of cases, every storage). Each suite body is declared once and run on PGlite (always) and
// on PostgreSQL (the server `npm test` starts, COFFER_TEST_DATABASE_URL), each with a freshly
// migrated database. What only one backend can do is a capability the cases check, as OpenBao's
// optional interfaces are: PGlite has one connection, so its transactions run one after another
// and there is no second server to hear a change.
import { randomUUID } from 'node:crypto';
import { openStorage, type Storage } from '@coffer/server/storage/db';
import { createRepos, type Repos } from '@coffer/server/storage/repos/index';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';

export interface Backend {
  readonly kind: 'pglite' | 'postgres';
  /** Several connections whose locks make each other wait (PostgreSQL); PGlite queues whole transactions. */
  readonly concurrent: boolean;
  /** A change published on one storage reaches another storage on the same database (PostgreSQL's LISTEN/NOTIFY). */
  readonly sharedFeed: boolean;
  storage: Storage;
  repos: Repos;
  /** Another server's storage on the same database (PostgreSQL only); closed after the suite. */
  openAnother(): Promise<Storage>;
}

/** Declares `body` once per backend. Hooks open the backend before the cases and close it after. */
export function describeContract(title: string, body: (backend: Backend) => void): void {
  describe(`${title} (PGlite)`, () => {
    const backend = { kind: 'pglite', concurrent: false, sharedFeed: false } as Backend;
    backend.openAnother = () => Promise.reject(new Error('PGlite is one process: there is no other server'));
    beforeAll(async () => {
      backend.storage = await openStorage({ dataDir: 'memory://' });
      backend.repos = createRepos(backend.storage.db);
    });
    afterAll(async () => {
      await backend.storage?.close();
    });
    body(backend);
  });
  describeIfPostgres(`${title} (PostgreSQL)`, () => {
    const backend = { kind: 'postgres', concurrent: true, sharedFeed: true } as Backend;
    let database: TestDatabase | undefined;
    const others: Storage[] = [];
    backend.openAnother = async () => {
      const other = await openStorage({ databaseUrl: database!.url, dataDir: '', poolSize: 4 });
      others.push(other);
      return other;
    };
    beforeAll(async () => {
      database = await createTestDatabase();
      backend.storage = await openStorage({ databaseUrl: database.url, dataDir: '', poolSize: 4 });
      backend.repos = createRepos(backend.storage.db);
    });
    afterAll(async () => {
      for (const other of others) await other.close();
      await backend.storage?.close();
      await database?.drop();
    });
    body(backend);
  });
}

let counter = 0;
/** A name no other case of the run uses. */
export function unique(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

export const bytes = (...values: number[]) => new Uint8Array(values);

/** seal_config with root version 1: namespace_keys and system_keys refer to it (deferred foreign key). */
export async function seedSeal(backend: Backend): Promise<void> {
  if (await backend.repos.sealConfig.find()) return;
  await backend.repos.sealConfig.insert({ seal_type: 'shamir', shares: 1, threshold: 1, root_version: 1, root_check: bytes(1, 2, 3) });
}

/** A namespace with its KEK version 1, as NamespaceService.create stores it. */
export async function seedNamespace(backend: Backend, name = unique('ns')): Promise<{ id: string; name: string }> {
  await seedSeal(backend);
  const id = randomUUID();
  await backend.storage.db.transaction().execute(async (trx) => {
    await backend.repos.namespaces.insert({ id, name, description: '', current_kek_version: 1, rotation_period_seconds: null }, trx);
    await backend.repos.namespaceKeys.insertActive({ namespace_id: id, version: 1, wrapped_key: bytes(9, 9), root_version: 1, origin: 'generated' }, trx);
  });
  return { id, name };
}

/** Polls until `check` passes (no fixed sleeps: the machine may be busy). */
export async function eventually(check: () => void | Promise<void>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** What `promise` rejected with; fails when it resolved. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection, got a result');
}
