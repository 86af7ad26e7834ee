/**
 * Fewer round trips per transaction on PostgreSQL, below Kysely: a pool
 * client's `query` is wrapped so that
 *
 *  - Kysely's `begin` is not sent on its own: it goes out with the
 *    transaction's first statement, in one write and one round trip (an
 *    empty transaction sends nothing at all);
 *  - a statement marked as its transaction's last (`commitWith`) carries the
 *    COMMIT in the same write and round trip, and Kysely's own `commit` that
 *    follows is answered here.
 *
 * Both are the extended protocol's pipelining: the messages of two
 * statements before one Sync. PostgreSQL runs them in order and, after an
 * error, skips the rest up to the Sync, so a failed statement never commits:
 * the transaction is left aborted and Kysely's `rollback` goes to the server.
 *
 * Why: a secret write holds its secret's row lock from its upsert to its
 * commit; every round trip in between is time other writers of that secret
 * wait (plus a socket write and a wake-up on both sides). With this, the lock
 * is held for the write's last statement and its commit in one round trip.
 *
 * A `commitWith` statement must be the last thing its transaction does: a
 * statement after it fails here (it would otherwise run outside the
 * transaction), and a rollback after it cannot undo it.
 */
import pg from 'pg';

/** Starts a statement that commits its transaction in the same round trip (PostgreSQL; a comment elsewhere). */
export const COMMIT_WITH = '/* coffer:commit-with */';
/**
 * Starts (after COMMIT_WITH, if both) a statement to prepare once per connection: a named
 * statement, so PostgreSQL parses and plans it once instead of on every run (for a write's two
 * statements that is most of their cost). Only for hot statements with few distinct texts.
 */
export const PREPARED = '/* coffer:prepared */';

/**
 * Marks (after COMMIT_WITH and PREPARED, if any) a statement to plan without sequential scans:
 * `select set_config('enable_seqscan', 'off', true)` goes before it in the same write and round
 * trip (before its Bind, where PostgreSQL plans it), for the rest of the transaction — the
 * implicit one that ends at the Sync, or an explicit one, where `set local enable_seqscan to
 * default` follows the statement. For a prepared statement on a table of few live rows and
 * many dead ones (a queue: audit_intents): PostgreSQL caches the plan it makes while the table
 * looks tiny (a sequential scan) and keeps it while insert/delete churn grows the heap until a
 * vacuum, so every run reads every dead row's page (measured: ~750 pages per audit append after
 * 8 s of writes, ~60 µs of PostgreSQL CPU per write; by the index, ~12). Check with
 * scripts/bench/pgcost.mjs that the statement's plans per call stay 0: where the generic plan
 * without sequential scans costs more than the custom ones (arrays PostgreSQL guesses at 10 rows
 * joined by index, as in a combined write's statement), it plans every call instead.
 */
export const NO_SEQSCAN = '/* coffer:no-seqscan */';
const NO_SEQSCAN_SQL = "select set_config('enable_seqscan', 'off', true) offset 1"; // computed, no row back
const SEQSCAN_DEFAULT_SQL = 'set local enable_seqscan to default';
const HEAD = COMMIT_WITH.length + PREPARED.length + NO_SEQSCAN.length + 2;
/** `marker` among a text's leading markers (searched back from HEAD: no copy, nothing past it read). */
const marked = (text: string, marker: string): boolean => text.lastIndexOf(marker, HEAD) !== -1;

/** Named statements by text: a marked text gets one name for the process (few texts, so no eviction). */
const names = new Map<string, string>();
const nameOf = (text: string): string | undefined => {
  if (!marked(text, PREPARED)) return undefined;
  let name = names.get(text);
  if (!name) names.set(text, (name = `coffer_${names.size + 1}`));
  return name;
};

type Values = unknown[] | undefined;
type Callback = (err: Error | null, result?: pg.QueryResult) => void;

/** What pg's Query does that its type declarations do not say (node_modules/pg/lib/query.js). */
interface QueryInternals {
  portal: string;
  text: string;
  name: string | undefined;
  hasBeenParsed(connection: PgConnection): boolean;
  submit(connection: PgConnection): Error | null;
  handleCommandComplete(msg: unknown, connection: PgConnection): void;
  _getRows(connection: PgConnection, rows: number | undefined): void;
}

interface PgConnection {
  stream: { cork?: () => void; uncork?: () => void };
  submittedNamedStatements: Record<string, string>;
  parse(config: { text: string; name?: string | undefined }): void;
  bind(config: Record<string, never>): void;
  execute(config: { portal?: string; rows?: number | undefined }): void;
  sync(): void;
}

const QueryBase = pg.Query as unknown as new (config: { text: string; name: string | undefined; values: Values; queryMode: 'extended'; callback: Callback }) => QueryInternals;

/** A parameterless statement (begin, commit) as extended-protocol messages, without a Sync. */
function statement(connection: PgConnection, text: string): void {
  connection.parse({ text });
  connection.bind({});
  connection.execute({});
}

/** How a PipelinedQuery's statement travels: `begin` before it, `commit` after it, `noSeqScan` (NO_SEQSCAN) around it in a `block` (an explicit transaction). */
interface Around {
  begin: boolean;
  commit: boolean;
  noSeqScan: boolean;
  block: boolean;
}

/** One statement, optionally preceded by `begin` and followed by `commit`, before a single Sync. */
class PipelinedQuery extends QueryBase {
  private completions = 0;
  /** Completions (begin, the no-seqscan setting) that come before the statement's. */
  private readonly before: number;

  constructor(
    text: string,
    name: string | undefined,
    values: Values,
    callback: Callback,
    private readonly around: Around,
  ) {
    super({ text, name, values, queryMode: 'extended', callback });
    this.before = (around.begin ? 1 : 0) + (around.noSeqScan ? 1 : 0);
  }

  override submit(connection: PgConnection): Error | null {
    // One write for all of it (pg corks its own messages the same way).
    connection.stream.cork?.();
    try {
      // A named statement is parsed before begin's messages: pg credits every ParseComplete to the
      // active query's name, so begin's must not come first (a failed parse would then be taken
      // for a prepared statement). pg's own prepare then sees it submitted and only binds it.
      if (this.name && !this.hasBeenParsed(connection)) {
        connection.parse({ text: this.text, name: this.name });
        connection.submittedNamedStatements[this.name] = this.text;
      }
      if (this.around.begin) statement(connection, 'begin');
      if (this.around.noSeqScan) statement(connection, NO_SEQSCAN_SQL);
      return super.submit(connection);
    } finally {
      connection.stream.uncork?.();
    }
  }

  /** pg's own: Execute, then Sync; the commit goes between. */
  override _getRows(connection: PgConnection, rows: number | undefined): void {
    connection.execute({ portal: this.portal, rows });
    if (this.around.noSeqScan && this.around.block && !this.around.commit) statement(connection, SEQSCAN_DEFAULT_SQL);
    if (this.around.commit) statement(connection, 'commit');
    connection.sync();
  }

  /** The statement's result is the query's; begin's and commit's completions are not. */
  override handleCommandComplete(msg: unknown, connection: PgConnection): void {
    this.completions += 1;
    if (this.completions === this.before + 1) super.handleCommandComplete(msg, connection);
  }
}

const done = (command: 'BEGIN' | 'COMMIT' | 'ROLLBACK'): pg.QueryResult => ({ command, rowCount: null, oid: 0, fields: [], rows: [] });

/**
 * Whether this pg has the Query internals the pipelining builds on (pg 8.x's query.js). They
 * are not pg's public API: a pg that changed them gets plain pg (a round trip per statement,
 * the same results) instead of a broken protocol exchange, and the unit test
 * storage-pipelining fails so the upgrade is noticed.
 */
export const pipeliningSupported: boolean = (() => {
  const proto = (pg.Query as unknown as { prototype?: Record<string, unknown> }).prototype;
  return !!proto && ['submit', '_getRows', 'handleCommandComplete', 'hasBeenParsed'].every((m) => typeof proto[m] === 'function');
})();

/** Whether a client's connection has what PipelinedQuery calls (not pg-native, not a changed pg). */
function connectionSupported(client: pg.ClientBase): boolean {
  const connection = (client as unknown as { connection?: Partial<Record<keyof PgConnection, unknown>> }).connection;
  return (
    !!connection &&
    typeof connection.submittedNamedStatements === 'object' &&
    ['parse', 'bind', 'execute', 'sync'].every((m) => typeof connection[m as keyof PgConnection] === 'function')
  );
}

/**
 * Wraps `client.query` as described above; call once per client (pool 'connect'). Returns false,
 * leaving the client as it is, where pg's internals are not the ones this was written against.
 */
export function pipelineTransactions(client: pg.ClientBase): boolean {
  if (!pipeliningSupported || !connectionSupported(client)) return false;
  const send = client.query.bind(client) as (...args: unknown[]) => unknown;
  /** idle: no transaction (or one this wrapper did not see begin); begun: `begin` not yet sent; open; committed: by a `commitWith` statement. */
  let state: 'idle' | 'begun' | 'open' | 'committed' = 'idle';
  const run = (text: string, values: Values, around: Around) =>
    new Promise<pg.QueryResult>((resolve, reject) => {
      send(new PipelinedQuery(text, nameOf(text), values, (err, result) => (err ? reject(err) : resolve(result!)), around));
    });
  /** A statement on its own (in an explicit transaction when `block`): named when marked PREPARED. */
  const plain = (text: string, values: Values, block: boolean): unknown => {
    if (marked(text, NO_SEQSCAN)) return run(text, values, { begin: false, commit: false, noSeqScan: true, block });
    const name = nameOf(text);
    return name ? send({ text, name, values }) : send(text, values);
  };

  const query = (config: unknown, values?: unknown, callback?: unknown): unknown => {
    // Kysely's form only: (text, parameters), no callback. Anything else (a cursor, a config object) flushes a pending begin.
    if (typeof config !== 'string' || typeof values === 'function' || callback !== undefined || (values !== undefined && !Array.isArray(values))) {
      if (state === 'begun') {
        state = 'open';
        void (send('begin') as Promise<unknown>).catch(() => undefined); // its failure fails the query queued behind it too
      }
      return send(config, values, callback);
    }
    const text = config;
    const params = values as Values;
    const word = params === undefined || params.length === 0 ? text.trim().toLowerCase() : '';
    switch (state) {
      case 'idle':
        if (word === 'begin') {
          state = 'begun';
          return Promise.resolve(done('BEGIN'));
        }
        return plain(text, params, false);
      case 'begun':
        if (word === 'commit' || word === 'rollback') {
          state = 'idle';
          return Promise.resolve(done(word === 'commit' ? 'COMMIT' : 'ROLLBACK'));
        }
        return sendInTransaction(text, params, true);
      case 'open':
        if (word === 'commit' || word === 'rollback') {
          state = 'idle';
          return send(text, params);
        }
        return sendInTransaction(text, params, false);
      case 'committed':
        if (word === 'commit' || word === 'rollback') {
          state = 'idle';
          return Promise.resolve(done('COMMIT'));
        }
        return Promise.reject(new Error('a statement after its transaction committed (a commitWith statement must be the last)'));
    }
  };

  const sendInTransaction = (text: string, params: Values, begin: boolean): Promise<pg.QueryResult> | unknown => {
    const commit = text.startsWith(COMMIT_WITH);
    if (!begin && !commit) return plain(text, params, true);
    state = 'open';
    const result = run(text, params, { begin, commit, noSeqScan: marked(text, NO_SEQSCAN), block: true });
    // Only a statement and commit that both succeeded leave no transaction open; after a failure
    // the transaction is aborted (or gone) and Kysely's rollback goes to the server.
    return commit ? result.then((r) => ((state = 'committed'), r)) : result;
  };

  (client as unknown as { query: typeof query }).query = query;
  return true;
}
