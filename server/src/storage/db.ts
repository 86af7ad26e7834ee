/**
 * Opens the one database: PostgreSQL through `pg` when a URL is configured,
 * otherwise embedded PGlite in a data directory (or in memory for dev mode).
 * Migrations run here, so every start-up brings the schema up to date.
 */
import { join } from 'node:path';
import { Kysely, PostgresDialect, type Dialect } from 'kysely';
import { Migrator } from 'kysely/migration';
import pg from 'pg';
import type { Database } from './schema.js';
import { migrationProvider } from './migrations.js';
import { lockDataDir, type DataDirLock } from './datadir-lock.js';
import { LocalChangeFeed, PostgresChangeFeed, type ChangeFeed } from './change-feed.js';

export type StorageKind = 'postgres' | 'pglite';

export interface Storage {
  db: Kysely<Database>;
  kind: StorageKind;
  /** Changes made by other servers sharing the database. */
  changes: ChangeFeed;
  /** Where the data lives, for the log (credentials stripped). */
  location: string;
  close(): Promise<void>;
}

export interface StorageOptions {
  databaseUrl?: string | undefined;
  /** PGlite data directory; `memory://` keeps everything in memory. */
  dataDir: string;
  poolSize?: number;
}

// int8 (count(*), sums) comes back from pg as a string: numbers are what the code expects,
// and every count Coffer makes is far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export async function openStorage(options: StorageOptions): Promise<Storage> {
  let dialect: Dialect;
  let kind: StorageKind;
  let location: string;
  let lock: DataDirLock | undefined;
  let changes: ChangeFeed;
  if (options.databaseUrl) {
    kind = 'postgres';
    location = redactUrl(options.databaseUrl);
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolSize ?? 10 });
    // An idle client losing its connection must not crash the server; the pool replaces it.
    pool.on('error', () => {});
    dialect = new PostgresDialect({ pool });
    changes = new PostgresChangeFeed(options.databaseUrl);
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
    async close() {
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

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres (unparseable URL)';
  }
}
