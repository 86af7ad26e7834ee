/**
 * Writes one unit of audit entries (a group-commit batch, or one entry) to the
 * hash chain in the database and to the line sinks.
 *
 * The database chain and the line sinks must agree on what happened: an entry
 * the database holds but a file sink refused would say "success, 200" for a
 * request whose client got 503. So with both configured, the chain INSERT runs
 * in a transaction that commits only after every line sink has the lines
 * (fsynced); if a sink fails, nothing commits and the caller records the real
 * outcome instead (AuditLog.refuse). Without line sinks the INSERT runs on its
 * own, no transaction: one statement per batch on the hottest path.
 *
 * The statement that inserts entries also deletes their requests' intents
 * (intents.ts), so an entry and the removal of its intent commit together.
 */
import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../storage/schema.js';
import { isUniqueViolation } from '../storage/errors.js';
import { GENESIS_HASH, chainHash, signCheckpoint } from './chain.js';
import type { AuditDraft, AuditEntry } from './entry.js';
import type { LineSink } from './sinks.js';

/** An entry waiting to be written. `draft` is already storable (storable.ts). */
export interface QueuedEntry {
  draft: AuditDraft;
  time: Date;
  /** Its request recorded an intent: delete it in the same statement. */
  intent: boolean;
}

interface ChainedEntry {
  entry: AuditEntry;
  body: string;
  hash?: Uint8Array;
  prevHash?: Uint8Array;
}

/** A line sink failed; the unit was not committed anywhere that can be taken back. */
export class LineSinkError extends Error {
  constructor(sink: string, cause: unknown) {
    const detail = (cause as { code?: unknown } | null)?.code ?? (cause instanceof Error ? cause.message : String(cause));
    super(`audit sink ${sink} failed: ${String(detail)}`);
    this.name = 'LineSinkError';
  }
}

export interface WriterOptions {
  database: boolean;
  lines: LineSink[];
  checkpointEvery: number;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const AUDIT_COLUMNS = 'seq, time, request_id, identity, action, namespace, path, outcome, status, body, prev_hash, hash';
const insertSqlCache = new Map<string, string>();

/**
 * `insert into audit_log (…) values ($1…$12), …` for `rows` rows, built once per
 * size; with `intents`, the last parameter is the array of request ids whose
 * intents the same statement deletes.
 */
function insertSql(rows: number, intents: boolean): string {
  const key = `${rows}:${intents}`;
  let text = insertSqlCache.get(key);
  if (!text) {
    const tuples = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: 12 }, (_, c) => `$${r * 12 + c + 1}`).join(', ')})`);
    const done = intents ? `with done as (delete from audit_intents where request_id = any($${rows * 12 + 1}::text[])) ` : '';
    text = `${done}insert into audit_log (${AUDIT_COLUMNS}) values ${tuples.join(', ')}`;
    if (insertSqlCache.size < 2048) insertSqlCache.set(key, text);
  }
  return text;
}

function rowParams({ entry, body, hash, prevHash }: ChainedEntry): unknown[] {
  return [
    entry.seq,
    entry.time,
    entry.request_id,
    entry.identity?.id ?? null,
    entry.action,
    entry.namespace,
    entry.path,
    entry.outcome,
    entry.status,
    body,
    prevHash,
    hash,
  ];
}

export class EntryWriter {
  /** The chain's last entry as this server last saw it; null = read it from the database. */
  private head: { seq: number; hash: Uint8Array } | null = null;
  lastCheckpointSeq = 0;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly options: WriterOptions,
    private readonly checkpointKey: () => Uint8Array | null,
  ) {}

  /** Forget the head (a caller's transaction may roll back what we appended). */
  forgetHead(): void {
    this.head = null;
  }

  /**
   * Writes `batch` to every sink (to the database only with `lines: false`), or
   * throws. Inside a caller's transaction (`trx`) the lines are written before
   * the caller commits and nothing is retried.
   */
  async commit(batch: QueuedEntry[], trx?: Transaction<Database>, options: { lines?: boolean } = {}): Promise<void> {
    const lines = options.lines !== false && this.options.lines.length > 0;
    if (!this.options.database) {
      if (!lines) return;
      const entries = batch.map(({ draft, time }) => {
        const entry: AuditEntry = { seq: 0, time: time.toISOString(), ...draft };
        return { entry, body: JSON.stringify(entry) };
      });
      await this.writeLines(entries);
      // No chain to delete them with: a crash right here recovers these intents a second time.
      const done = batch.filter((q) => q.intent).map((q) => q.draft.request_id);
      if (done.length > 0) await (trx ?? this.db).deleteFrom('audit_intents').where('request_id', 'in', done).execute();
      return;
    }
    await this.appendToChain(batch, lines, trx);
  }

  /**
   * Appends a batch to the chain with one INSERT. The head (last seq and hash)
   * is remembered between batches; if another server sharing the database
   * appended meanwhile, our first sequence number already exists, the insert
   * fails as a whole on the primary key, and we reload the head and retry. No
   * lock, no read on the common path.
   */
  private async appendToChain(batch: QueuedEntry[], lines: boolean, trx?: Transaction<Database>): Promise<void> {
    const db = trx ?? this.db;
    for (let attempt = 0; attempt < (trx ? 1 : 20); attempt++) {
      this.head ??= await this.loadHead(db);
      const out = this.chain(batch, this.head);
      const query = CompiledQuery.raw(insertSql(out.length, batch.some((q) => q.intent)), this.params(batch, out));
      try {
        if (lines && !trx) {
          // Commits only once every line sink has the lines (see the header).
          await this.db.transaction().execute(async (t) => {
            await t.executeQuery(query);
            await this.writeLines(out);
          });
        } else {
          // Raw SQL: building a multi-row INSERT through the query builder costs more CPU than the insert.
          await db.executeQuery(query);
          if (lines) await this.writeLines(out);
        }
      } catch (err) {
        this.head = null;
        // Inside a caller's transaction a failed statement aborts it: no retry there.
        if (isUniqueViolation(err) && !trx) continue;
        throw err;
      }
      const last = out[out.length - 1]!;
      this.head = { seq: last.entry.seq, hash: last.hash! };
      await this.checkpointIfDue(db, out[0]!.entry.seq, last);
      return;
    }
    throw new Error('audit chain: too much contention appending (20 attempts)');
  }

  private chain(batch: QueuedEntry[], head: { seq: number; hash: Uint8Array }): ChainedEntry[] {
    let { seq, hash: prev } = head;
    return batch.map(({ draft, time }): ChainedEntry => {
      seq += 1;
      const entry: AuditEntry = { seq, time: time.toISOString(), ...draft };
      const body = JSON.stringify(entry);
      const hash = chainHash(prev, body);
      const item = { entry, body, hash, prevHash: prev };
      prev = hash;
      return item;
    });
  }

  private params(batch: QueuedEntry[], out: ChainedEntry[]): unknown[] {
    const params = out.flatMap(rowParams);
    if (batch.some((q) => q.intent)) params.push(batch.filter((q) => q.intent).map((q) => q.draft.request_id));
    return params;
  }

  private async checkpointIfDue(db: Kysely<Database>, firstSeq: number, last: ChainedEntry): Promise<void> {
    const key = this.checkpointKey();
    const every = this.options.checkpointEvery;
    if (!key || Math.floor(last.entry.seq / every) <= Math.floor((firstSeq - 1) / every)) return;
    // On conflict keep the old checkpoint: after a truncation, new entries reuse old
    // sequence numbers, and the surviving checkpoint is what lets verify catch it.
    await db
      .insertInto('audit_checkpoints')
      .values({ seq: last.entry.seq, hash: last.hash!, time: new Date(), signature: signCheckpoint(key, last.entry.seq, last.hash!) })
      .onConflict((oc) => oc.column('seq').doNothing())
      .execute();
    this.lastCheckpointSeq = last.entry.seq;
  }

  /** Signs the committed head if it moved since the last checkpoint. */
  async checkpointNow(key: Uint8Array): Promise<void> {
    // Entries are immutable once committed: signing the committed head needs no lock.
    const head = await this.loadHead(this.db);
    if (head.seq <= this.lastCheckpointSeq) return;
    await this.db
      .insertInto('audit_checkpoints')
      .values({ seq: head.seq, hash: head.hash, time: new Date(), signature: signCheckpoint(key, head.seq, head.hash) })
      .onConflict((oc) => oc.column('seq').doNothing())
      .execute();
    this.lastCheckpointSeq = head.seq;
  }

  private async loadHead(db: Kysely<Database> | Transaction<Database>): Promise<{ seq: number; hash: Uint8Array }> {
    const head = await db.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return head ? { seq: Number(head.seq), hash: head.hash } : { seq: 0, hash: GENESIS_HASH };
  }

  private async writeLines(entries: ChainedEntry[]): Promise<void> {
    if (this.options.lines.length === 0) return;
    const lines = entries
      .map(({ body, hash, prevHash }) =>
        hash && prevHash ? `${body.slice(0, -1)},"prev_hash":"${hex(prevHash)}","hash":"${hex(hash)}"}\n` : `${body}\n`,
      )
      .join('');
    await Promise.all(
      this.options.lines.map((sink) =>
        sink.write(lines).catch((err: unknown) => {
          throw new LineSinkError(sink.name, err);
        }),
      ),
    );
  }
}
