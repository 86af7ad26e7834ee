/**
 * A Kysely dialect for PGlite (Postgres compiled to WASM, in-process).
 *
 * PGlite has exactly one connection and runs one query at a time, so the driver
 * hands out that single connection to one holder at a time: a transaction keeps
 * it from BEGIN to COMMIT and everyone else queues. That is what makes "every
 * multi-row change is one transaction" hold on the embedded default too.
 */
import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

/**
 * PGlite attaches the failing statement's parameters (and query options) to its
 * errors; pg does not. Parameters are values: audit batches, ciphertexts, token
 * accessors. Any log line that serialises the error (pino logs every own
 * property) would print them, so they are removed here, where every query passes.
 */
function withoutParameters(err: unknown): unknown {
  if (err && typeof err === 'object') {
    for (const field of ['params', 'queryOptions']) {
      if (field in err) delete (err as Record<string, unknown>)[field];
    }
  }
  return err;
}

class PGliteConnection implements DatabaseConnection {
  constructor(private readonly client: PGlite) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    let result;
    try {
      result = await this.client.query<R>(query.sql, [...query.parameters]);
    } catch (err) {
      throw withoutParameters(err);
    }
    return result.affectedRows !== undefined
      ? { rows: result.rows, numAffectedRows: BigInt(result.affectedRows) }
      : { rows: result.rows };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming is not supported on PGlite');
  }
}

class PGliteDriver implements Driver {
  private readonly connection: PGliteConnection;
  private held = false;
  private readonly waiters: Array<(c: DatabaseConnection) => void> = [];

  constructor(private readonly client: PGlite) {
    this.connection = new PGliteConnection(client);
  }

  async init(): Promise<void> {
    await this.client.waitReady;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    if (!this.held) {
      this.held = true;
      return this.connection;
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async releaseConnection(): Promise<void> {
    const next = this.waiters.shift();
    if (next) next(this.connection);
    else this.held = false;
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const sql = settings.isolationLevel
      ? `start transaction isolation level ${settings.isolationLevel}`
      : 'begin';
    await conn.executeQuery(CompiledQuery.raw(sql));
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('rollback'));
  }

  async destroy(): Promise<void> {
    if (!this.client.closed) await this.client.close();
  }
}

export class PGliteDialect implements Dialect {
  constructor(private readonly client: PGlite) {}
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PGliteDriver(this.client);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db);
  }
}
