/**
 * Opens the one database: PostgreSQL through `pg` when a URL is configured,
 * otherwise embedded PGlite in a data directory (or in memory for dev mode).
 * Migrations run here, so every start-up brings the schema up to date.
 */
import { join } from 'node:path';
import { Kysely, PostgresDialect, sql, type Dialect } from 'kysely';
import { pipelineTransactions } from './pipelined-client.js';
import { Migrator } from 'kysely/migration';
import pg from 'pg';
import type { Database } from './schema.js';
import { migrationProvider } from './migrations.js';
import { lockDataDir, type DataDirLock } from './datadir-lock.js';
import { LocalChangeFeed, PostgresChangeFeed, type ChangeFeed } from './change-feed.js';
import { fencedDialect } from './job-fence.js';
import { LocalJobLocks, PostgresJobLocks, type JobLocks } from './job-locks.js';
import { redactUrl } from './redact-url.js';

export type StorageKind = 'postgres' | 'pglite';

export interface Storage {
  db: Kysely<Database>;
  kind: StorageKind;
  /** Changes made by other servers sharing the database. */
  changes: ChangeFeed;
  /** Cluster-wide locks of background jobs (jobs/scheduler.ts). */
  jobLocks: JobLocks;
  /** Where the data lives, for the log (credentials stripped). */
  location: string;
  /** Connection pool use; only PostgreSQL has a pool (PGlite is one in-process connection). */
  poolStats?(): PoolStats;
  close(): Promise<void>;
}

export interface PoolStats {
  /** Connections open, idle or in use. */
  total: number;
  idle: number;
  /** Queries waiting for a connection. */
  waiting: number;
  /** The configured pool size. */
  max: number;
}

export interface StorageOptions {
  databaseUrl?: string | undefined;
  /** PGlite data directory; `memory://` keeps everything in memory. */
  dataDir: string;
  poolSize?: number;
  /**
   * Told when a PostgreSQL connection breaks (a database restart, a terminated
   * backend): `pool` for a pooled connection, `change-feed` for the LISTEN one,
   * `job-locks` for the one holding background jobs' locks.
   * For the log only; the storage recovers by itself.
   */
  onConnectionLost?: (where: 'pool' | 'change-feed' | 'job-locks', err: Error) => void;
}

/**
 * How long a query waits for a pooled connection (a free one, or a new one to
 * open) before it fails as "database unavailable" (503). Without a bound, a
 * database host that drops packets holds every request for the kernel's TCP
 * connect timeout (minutes).
 */
const CONNECT_TIMEOUT_MS = 10_000;

// int8 (count(*), sums) comes back from pg as a string: numbers are what the code expects,
// and every count Coffer makes is far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export async function openStorage(options: StorageOptions): Promise<Storage> {
  let dialect: Dialect;
  let kind: StorageKind;
  let location: string;
  let lock: DataDirLock | undefined;
  let changes: ChangeFeed;
  let jobLocks: JobLocks;
  let poolStats: (() => PoolStats) | undefined;
  if (options.databaseUrl) {
    kind = 'postgres';
    location = redactUrl(options.databaseUrl, 'postgres (unparseable URL)');
    const max = options.poolSize ?? 10;
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    poolStats = () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max });
    const lost = (err: Error) => options.onConnectionLost?.('pool', err);
    // A connection that breaks emits 'error' on its pg.Client, and an 'error' event nobody
    // listens to ends the process. pg-pool listens only while a client is idle in the pool;
    // Kysely holds a client checked out for a whole transaction, and a database restart or
    // pg_terminate_backend then crashed the server (and a Shamir server stays sealed until
    // operators come). So every client gets its own listener for its whole life. The broken
    // client is not reused: pg marks it not queryable, its pending query rejects (→ 503),
    // and pg-pool destroys a non-queryable client when Kysely releases it.
    pool.on('connect', (client) => {
      pipelineTransactions(client);
      let reported = false; // a terminated backend's FATAL and then the socket's end: both are errors
      client.on('error', (err) => {
        if (!reported) lost(err);
        reported = true;
      });
    });
    // pg-pool re-emits an idle client's error on the pool (already reported above) and drops the client.
    pool.on('error', () => {});
    // Background jobs' transactions commit only while their lock's epoch holds (job-fence.ts).
    dialect = fencedDialect(new PostgresDialect({ pool }));
    changes = new PostgresChangeFeed(options.databaseUrl, (err) => options.onConnectionLost?.('change-feed', err));
    jobLocks = new PostgresJobLocks(options.databaseUrl, (err) => options.onConnectionLost?.('job-locks', err));
  } else {
    kind = 'pglite';
    const { PGlite } = await import('@electric-sql/pglite');
    const { PGliteDialect } = await import('./pglite-dialect.js');
    let client;
    if (options.dataDir === 'memory://') {
      location = 'memory';
      client = await PGlite.create();
    } else {
      lock = lockDataDir(options.dataDir);
      location = join(options.dataDir, 'pglite');
      try {
        client = await PGlite.create(location);
      } catch (err) {
        lock.release();
        throw err;
      }
    }
    dialect = new PGliteDialect(client);
    changes = new LocalChangeFeed();
    jobLocks = new LocalJobLocks();
  }
  const db = new Kysely<Database>({ dialect });
  try {
    await migrate(db);
    if (changes instanceof PostgresChangeFeed) await changes.start();
  } catch (err) {
    await changes.close();
    await db.destroy();
    lock?.release();
    throw err;
  }
  return {
    db,
    kind,
    location,
    changes,
    jobLocks,
    ...(poolStats ? { poolStats } : {}),
    async close() {
      await jobLocks.close();
      await changes.close();
      await db.destroy();
      lock?.release();
    },
  };
}

export async function migrate(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

export type DatabaseCheck = 'ok' | 'timeout' | 'error';

/**
 * Does the database answer `select 1` within `timeoutMs`? A query still queued
 * at the deadline (pool exhausted, PGlite busy in a long transaction) counts as
 * a timeout; it is left to finish on its own.
 */
export async function pingDatabase(db: Kysely<Database>, timeoutMs: number): Promise<DatabaseCheck> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<DatabaseCheck>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const query = sql`select 1`.execute(db).then(
    (): DatabaseCheck => 'ok',
    (): DatabaseCheck => 'error',
  );
  try {
    return await Promise.race([query, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
