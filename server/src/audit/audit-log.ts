/**
 * The audit log: every request's entry is made durable before its response
 * leaves (fail-closed). Entries queue and are written in group commits: while
 * one batch is being written, the next one gathers, so the cost per entry
 * falls as load rises. In the database, batches append to one hash chain with
 * a single INSERT each; servers sharing PostgreSQL extend the same chain, the
 * primary key on the sequence number settling who appends next.
 */
import { createHmac } from 'node:crypto';
import type { AuditPage, AuditVerifyResult } from '@coffer/sdk/api';
import { CompiledQuery, sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import { CofferError } from '../errors.js';
import { zeroize, type KeyMaterial } from '../keyring/aead.js';
import type { Database } from '../storage/schema.js';
import { isConnectionError, isUniqueViolation } from '../storage/errors.js';
import { GENESIS_HASH, chainHash, checkpointValid, sameBytes, signCheckpoint } from './chain.js';
import type { AuditDraft, AuditEntry } from './entry.js';
import type { LineSink } from './sinks.js';

export interface AuditOptions {
  /** Append to the hash chain in the database. */
  database: boolean;
  lines: LineSink[];
  timeoutMs: number;
  checkpointEvery: number;
  maxBatch: number;
}

interface ChainedEntry {
  entry: AuditEntry;
  body: string;
  hash: Uint8Array;
  prevHash: Uint8Array;
}

interface Pending {
  draft: AuditDraft;
  time: Date;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface AuditQuery {
  identity?: string | undefined;
  namespace?: string | undefined;
  path?: string | undefined;
  action?: string | undefined;
  outcome?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** Newest first from before this seq (desc), or oldest first after it (asc). */
  cursor?: number | undefined;
  order: 'asc' | 'desc';
  limit: number;
}

/** Usually the database is away (a restart): the client is asked to retry after a second. */
export const auditUnavailable = () =>
  new CofferError(503, 'unavailable', 'the audit log cannot record this request, so it was not served; see the server log', undefined, 1);

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A lost database connection needs no stack trace in the log (an outage would repeat it per batch). */
const logged = (err: unknown) =>
  err instanceof CofferError ? err.message : isConnectionError(err) ? `database unavailable: ${(err as Error).message}` : err;

const AUDIT_COLUMNS = 'seq, time, request_id, identity, action, namespace, path, outcome, status, body, prev_hash, hash';
const insertSqlCache = new Map<number, string>();

/** `insert into audit_log (…) values ($1…$12), …` for `rows` rows, built once per size. */
function insertSql(rows: number): string {
  let text = insertSqlCache.get(rows);
  if (!text) {
    const tuples = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: 12 }, (_, c) => `$${r * 12 + c + 1}`).join(', ')})`);
    text = `insert into audit_log (${AUDIT_COLUMNS}) values ${tuples.join(', ')}`;
    if (insertSqlCache.size < 1024) insertSqlCache.set(rows, text);
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

export class AuditLog {
  private queue: Pending[] = [];
  private flushing: Promise<void> | null = null;
  /** Set while a write has outlived its timeout: new requests fail at once instead of piling up. */
  private stalled = false;
  private fieldKey: KeyMaterial | null = null;
  private checkpointKey: KeyMaterial | null = null;
  private lastCheckpointSeq = 0;
  /** The chain's last entry as this server last saw it; null = read it from the database. */
  private head: { seq: number; hash: Uint8Array } | null = null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly options: AuditOptions,
    private readonly logger: Logger,
  ) {}

  get enabled(): boolean {
    return this.options.database || this.options.lines.length > 0;
  }

  /** False while a sink is stuck; requests are refused (503) until it recovers. */
  get healthy(): boolean {
    return !this.stalled;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  /**
   * Installs the audit key (on unseal) or removes it (null, on seal). Two
   * subkeys are derived so field HMACs and checkpoint signatures never share a key.
   */
  setKey(auditKey: KeyMaterial | null): void {
    zeroize(this.fieldKey, this.checkpointKey);
    this.fieldKey = this.checkpointKey = null;
    if (!auditKey) return;
    this.fieldKey = new Uint8Array(createHmac('sha256', auditKey).update('coffer audit field hmac v1').digest());
    this.checkpointKey = new Uint8Array(createHmac('sha256', auditKey).update('coffer audit checkpoint v1').digest());
    zeroize(auditKey);
  }

  /** HMAC-SHA256 of a sensitive value under the audit key; null while sealed. */
  hmac(value: string): string | null {
    if (!this.fieldKey) return null;
    return `hmac-sha256:${createHmac('sha256', this.fieldKey).update(value, 'utf8').digest('hex')}`;
  }

  /** Resolves once the entry is durable in every sink; rejects (→ 503) otherwise. */
  append(draft: AuditDraft): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.stalled) return Promise.reject(auditUnavailable());
    return new Promise((resolve, reject) => {
      this.queue.push({ draft, time: new Date(), resolve, reject });
      this.flushing ??= this.drain().finally(() => {
        this.flushing = null;
      });
    });
  }

  /**
   * Lets every request whose I/O is already pending reach the queue before a
   * batch is cut. This matters on PGlite, whose queries run synchronously on
   * this thread: without the pause, each batch would hold one entry.
   */
  private gather(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }


  /**
   * Writes one entry inside the caller's transaction, so that the change and
   * its audit entry commit together or not at all (used for init, whose
   * response carries the only copy of the shares). Line sinks get it before
   * the caller commits; a failure anywhere aborts the caller's change.
   */
  async appendWithin(trx: Transaction<Database>, draft: AuditDraft): Promise<void> {
    if (!this.enabled) return;
    if (this.stalled) throw auditUnavailable();
    const pending: Pending = { draft, time: new Date(), resolve: () => {}, reject: () => {} };
    try {
      await this.withTimeout(this.write([pending], trx));
    } catch (err) {
      this.logger.error({ err: logged(err) }, 'audit write failed; the request was refused');
      throw auditUnavailable();
    } finally {
      // The transaction may still roll back: read the head afresh next time.
      this.head = null;
    }
  }

  /** Waits for queued entries, writes a final checkpoint, closes the sinks. */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.checkpointNow().catch((err) => this.logger.error({ err }, 'audit checkpoint at shutdown failed'));
    this.setKey(null);
    await Promise.all(this.options.lines.map((s) => s.close()));
  }

  /** Signs the current head, if the key is present and the head moved since the last checkpoint. */
  async checkpointNow(): Promise<void> {
    if (!this.options.database || !this.checkpointKey) return;
    while (this.flushing) await this.flushing;
    const key = this.checkpointKey;
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

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      await this.gather();
      const batch = this.queue.splice(0, this.options.maxBatch);
      try {
        await this.withTimeout(this.write(batch));
        for (const p of batch) p.resolve();
      } catch (err) {
        this.logger.error({ err: logged(err), entries: batch.length }, 'audit write failed; the requests were refused');
        for (const p of batch) p.reject(auditUnavailable());
      }
    }
  }

  private withTimeout(work: Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.stalled = true;
        reject(new CofferError(503, 'unavailable', `audit sink did not answer within ${this.options.timeoutMs} ms`, undefined, 1));
        // Stay refusing until the stuck write settles one way or the other.
        work.then(
          () => (this.stalled = false),
          () => (this.stalled = false),
        );
      }, this.options.timeoutMs);
      work.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /**
   * Appends a batch to the chain with one INSERT. The head (last seq and hash)
   * is remembered between batches; if another server sharing the database
   * appended meanwhile, our first sequence number already exists, the insert
   * fails as a whole on the primary key, and we reload the head and retry. No
   * lock, no read, no explicit transaction on the common path.
   */
  private async appendToChain(batch: Pending[], trx?: Transaction<Database>): Promise<ChainedEntry[]> {
    const db = trx ?? this.db;
    for (let attempt = 0; attempt < (trx ? 1 : 20); attempt++) {
      this.head ??= await this.loadHead(db);
      let { seq, hash: prev } = this.head;
      const out = batch.map((p): ChainedEntry => {
        seq += 1;
        const entry: AuditEntry = { seq, time: p.time.toISOString(), ...p.draft };
        const body = JSON.stringify(entry);
        const hash = chainHash(prev, body);
        const item = { entry, body, hash, prevHash: prev };
        prev = hash;
        return item;
      });
      try {
        // Raw SQL: this runs once per batch on the hottest path, and building a multi-row
        // INSERT through the query builder costs more CPU than the insert itself.
        await db.executeQuery(CompiledQuery.raw(insertSql(out.length), out.flatMap(rowParams)));
      } catch (err) {
        this.head = null;
        // Inside a caller's transaction a failed statement aborts it: no retry there.
        if (isUniqueViolation(err) && !trx) continue;
        throw err;
      }
      const last = out[out.length - 1]!;
      this.head = { seq: last.entry.seq, hash: last.hash };
      const every = this.options.checkpointEvery;
      if (this.checkpointKey && Math.floor(last.entry.seq / every) > Math.floor((out[0]!.entry.seq - 1) / every)) {
        // On conflict keep the old checkpoint: after a truncation, new entries reuse old
        // sequence numbers, and the surviving checkpoint is what lets verify catch it.
        await db
          .insertInto('audit_checkpoints')
          .values({ seq: last.entry.seq, hash: last.hash, time: new Date(), signature: signCheckpoint(this.checkpointKey, last.entry.seq, last.hash) })
          .onConflict((oc) => oc.column('seq').doNothing())
          .execute();
        this.lastCheckpointSeq = last.entry.seq;
      }
      return out;
    }
    throw new Error('audit chain: too much contention appending (20 attempts)');
  }

  private async loadHead(db: Kysely<Database> | Transaction<Database>): Promise<{ seq: number; hash: Uint8Array }> {
    const head = await db.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return head ? { seq: Number(head.seq), hash: head.hash } : { seq: 0, hash: GENESIS_HASH };
  }

  private async write(batch: Pending[], trx?: Transaction<Database>): Promise<void> {
    const entries: Array<Omit<ChainedEntry, 'hash' | 'prevHash'> & Partial<ChainedEntry>> = this.options.database
      ? await this.appendToChain(batch, trx)
      : batch.map((p) => {
          const entry = { seq: 0, time: p.time.toISOString(), ...p.draft };
          return { entry, body: JSON.stringify(entry) };
        });
    if (this.options.lines.length === 0) return;
    const lines = entries
      .map(({ body, hash, prevHash }) =>
        hash && prevHash ? `${body.slice(0, -1)},"prev_hash":"${hex(prevHash)}","hash":"${hex(hash)}"}\n` : `${body}\n`,
      )
      .join('');
    await Promise.all(this.options.lines.map((sink) => sink.write(lines)));
  }

  /** Walks the whole chain and the checkpoints; reports the first broken link. */
  async verify(): Promise<AuditVerifyResult> {
    const problems: Array<{ seq: number; reason: string }> = [];
    // Only the hashes at checkpointed positions are kept: the walk itself needs O(1) memory.
    const checkpoints = await this.db.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
    const wanted = new Set(checkpoints.map((cp) => Number(cp.seq)));
    const hashes = new Map<number, Uint8Array>();
    let prev: Uint8Array = GENESIS_HASH;
    let expectedSeq = 1;
    let checked = 0;
    let after = 0;
    let head: AuditVerifyResult['head'] = null;
    for (;;) {
      const rows = await this.db
        .selectFrom('audit_log')
        .select(['seq', 'body', 'prev_hash', 'hash'])
        .where('seq', '>', after)
        .orderBy('seq')
        .limit(5000)
        .execute();
      if (rows.length === 0) break;
      for (const row of rows) {
        const seq = Number(row.seq);
        checked++;
        if (problems.length === 0) {
          let bodySeq: unknown;
          try {
            bodySeq = (JSON.parse(row.body) as { seq?: unknown }).seq;
          } catch {
            bodySeq = undefined;
          }
          if (seq !== expectedSeq) problems.push({ seq: expectedSeq, reason: `entry ${expectedSeq} is missing (next is ${seq})` });
          else if (bodySeq !== seq) problems.push({ seq, reason: `entry ${seq} holds the body of entry ${String(bodySeq)}` });
          else if (!sameBytes(row.prev_hash, prev)) problems.push({ seq, reason: `entry ${seq} does not follow entry ${seq - 1} (previous hash differs)` });
          else if (!sameBytes(row.hash, chainHash(row.prev_hash, row.body))) problems.push({ seq, reason: `entry ${seq} was altered (its hash does not match its content)` });
        }
        if (wanted.has(seq)) hashes.set(seq, row.hash);
        prev = row.hash;
        expectedSeq = seq + 1;
        head = { seq, hash: hex(row.hash) };
      }
      after = Number(rows[rows.length - 1]!.seq);
    }
    for (const cp of checkpoints) {
      const seq = Number(cp.seq);
      if (this.checkpointKey && !checkpointValid(this.checkpointKey, seq, cp.hash, cp.signature)) {
        problems.push({ seq, reason: `checkpoint at ${seq} has an invalid signature` });
        continue;
      }
      const actual = hashes.get(seq);
      if (!actual) problems.push({ seq, reason: `checkpoint at ${seq} covers entries that are gone (the log was truncated)` });
      else if (!sameBytes(actual, cp.hash)) problems.push({ seq, reason: `the chain up to ${seq} differs from its signed checkpoint` });
    }
    problems.sort((a, b) => a.seq - b.seq);
    return {
      ok: problems.length === 0,
      entries_checked: checked,
      checkpoints_checked: checkpoints.length,
      head,
      first_broken: problems[0] ?? null,
    };
  }

  async search(q: AuditQuery): Promise<AuditPage> {
    let query = this.db.selectFrom('audit_log').select(['seq', 'body']);
    if (q.identity) query = query.where('identity', '=', q.identity);
    if (q.namespace) query = query.where('namespace', '=', q.namespace);
    if (q.path) query = query.where(sql<boolean>`starts_with(path, ${q.path})`);
    if (q.action) query = query.where('action', '=', q.action);
    if (q.outcome) query = query.where('outcome', '=', q.outcome);
    if (q.since) query = query.where('time', '>=', q.since);
    if (q.until) query = query.where('time', '<', q.until);
    if (q.cursor !== undefined) query = query.where('seq', q.order === 'asc' ? '>' : '<', q.cursor);
    const rows = await query.orderBy('seq', q.order).limit(q.limit + 1).execute();
    const page = rows.slice(0, q.limit);
    return {
      entries: page.map((r) => JSON.parse(r.body) as AuditEntry),
      next_cursor: rows.length > q.limit ? Number(page[page.length - 1]!.seq) : null,
    };
  }
}
