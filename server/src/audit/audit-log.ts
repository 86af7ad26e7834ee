/**
 * The audit log: every request's entry is made durable before its response
 * leaves (fail-closed). Entries queue and are written in group commits: while
 * one batch is being written, the next one gathers, so the cost per entry
 * falls as load rises. In the database, batches append to one hash chain with
 * a single INSERT each; servers sharing PostgreSQL extend the same chain, the
 * primary key on the sequence number settling who appends next.
 *
 * Three rules keep one request from hurting the others and keep every change
 * audited:
 *  - Nothing a client sends makes an entry unwritable: drafts pass through
 *    storable() (NUL, lone surrogates) before anything is hashed or stored.
 *  - If the database refuses a batch anyway, its entries are retried one by
 *    one, so only an entry that truly cannot be written fails its request.
 *  - Requests that may change state record an intent first (intents.ts); an
 *    intent whose entry was never written becomes a recovered entry.
 * A batch that fails as a whole (sink down, disk full, database gone) starts an
 * outage: readiness says "failing" until a write succeeds again, and the first
 * entry written after it (action sys.audit.resumed) records how long it lasted
 * and how many requests were refused.
 */
import { createHmac } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Logger } from 'pino';
import { CofferError } from '../errors.js';
import { zeroize, type KeyMaterial } from '../crypto/aead.js';
import type { Database } from '../storage/schema.js';
import { isConnectionError, pgErrorCode } from '../storage/errors.js';
import { outsideJobFence } from '../storage/job-fence.js';
import type { AuditRepo } from '../storage/repos/audit.js';
import type { AuditIntentsRepo } from '../storage/repos/audit-intents.js';
import { systemDraft, type AuditDraft, type AuditEntry } from './entry.js';
import { AuditIntents, type ChangeIntent } from './intents.js';
import { IntentRecovery } from './recovery.js';
import { searchLog, verifyChain, type AuditQuery, type ReaderStore, type VerifyResult } from './reader.js';
import type { LineSink } from './sinks.js';
import { storable } from './storable.js';
import { EntryWriter, LineSinkError, type QueuedEntry } from './writer.js';

export type { AuditQuery, VerifyResult } from './reader.js';

export interface AuditOptions {
  /** Append to the hash chain in the database. */
  database: boolean;
  lines: LineSink[];
  timeoutMs: number;
  checkpointEvery: number;
  maxBatch: number;
  /** No other process uses this database (PGlite): an earlier process's intents are recovered at once. */
  exclusive?: boolean | undefined;
  /** An intent this old belongs to a request that is over: its entry is recovered. */
  recoverAfterMs?: number | undefined;
}

interface Pending extends QueuedEntry {
  /** The sys.audit.resumed entry: not a request, not counted as refused. */
  system?: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

export type AuditState = 'ok' | 'stalled' | 'failing';

/** The audit log's tables: the chain with its checkpoints, and the intents. */
export interface AuditStore {
  audit: AuditRepo;
  intents: AuditIntentsRepo;
}

/** Usually the database is away (a restart): the client is asked to retry after a second. */
export const auditUnavailable = () =>
  new CofferError('unavailable', 'the audit log cannot record this request, so it was not served; see the server log', undefined, 1);

/** How often a failing audit log tries to write again when no request does. */
const PROBE_INTERVAL_MS = 2000;
/** Accessor HMACs remembered (accessorHmac); the map starts over when full. */
const ACCESSOR_HMACS = 10_000;
const SYSTEM_IDENTITY = { id: 'system:audit', display_name: 'audit log' } as const;

/** A database error about the statement (not the connection or the server): other entries may still go in. */
function statementError(err: unknown): boolean {
  const code = pgErrorCode(err);
  // Errnos such as EPIPE look like SQLSTATEs: the connection check comes first.
  return code !== undefined && !isConnectionError(err) && /^[0-9A-Z]{5}$/.test(code) && !['08', '53', '57', '58', 'XX'].includes(code.slice(0, 2));
}

/** A failure that says something about the entry (its data), not about the log's health. */
function entrySpecific(err: unknown): boolean {
  const code = pgErrorCode(err) ?? '';
  return (code.startsWith('22') || code.startsWith('23') || code.startsWith('P0')) && code !== '23505';
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

export class AuditLog {
  private queue: Pending[] = [];
  private flushing: Promise<void> | null = null;
  /** Set while a write has outlived its timeout: new requests fail at once instead of piling up. */
  private stalled = false;
  private fieldKey: KeyMaterial | null = null;
  private readonly accessorHmacs = new Map<string, string>();
  private checkpointKey: KeyMaterial | null = null;
  private readonly writer: EntryWriter;
  private readonly intents: AuditIntents;
  private readonly recovery: IntentRecovery;
  private readonly reader: ReaderStore;
  private outage: { since: Date; refused: number; reason: string } | null = null;
  private probeDue = false;
  private probeTimer: NodeJS.Timeout | null = null;
  /** Set by close(): no new timers; once closed, nothing more is written. */
  private closing = false;
  private closed = false;

  constructor(
    store: AuditStore,
    private readonly options: AuditOptions,
    private readonly logger: Logger,
  ) {
    this.writer = new EntryWriter(store.audit, store.intents, options, () => this.checkpointKey);
    this.intents = new AuditIntents(store.intents, options.maxBatch);
    this.reader = store;
    this.recovery = new IntentRecovery(this.intents, (draft, opts) => this.append(draft, opts), logger, {
      recoverAfterMs: options.recoverAfterMs ?? 120_000,
      exclusive: options.exclusive ?? false,
    });
  }

  get enabled(): boolean {
    return this.options.database || this.options.lines.length > 0;
  }

  /** False while a sink is stuck; requests are refused (503) until it recovers. */
  get healthy(): boolean {
    return !this.stalled;
  }

  /** For readiness: stuck (requests refused up front), failing (the last writes failed), or ok. */
  get state(): AuditState {
    return this.stalled ? 'stalled' : this.outage ? 'failing' : 'ok';
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
    this.accessorHmacs.clear();
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

  /**
   * `hmac` of a token accessor, remembered: every request of a token names
   * the same one, and the HMAC was a visible share of a read's CPU. Only
   * accessors are kept (they are in memory anyway, in the verified-token
   * cache and the revocation list), never other hashed values such as secret
   * data; forgotten with the key.
   */
  accessorHmac(accessor: string): string | null {
    const known = this.accessorHmacs.get(accessor);
    if (known !== undefined) return known;
    const digest = this.hmac(accessor);
    if (digest === null) return null;
    if (this.accessorHmacs.size >= ACCESSOR_HMACS) this.accessorHmacs.clear();
    this.accessorHmacs.set(accessor, digest);
    return digest;
  }

  /**
   * Records the intent of a request that may change state, before its handler
   * runs; rejects (→ 503, nothing changed) if it cannot be made durable. Its
   * entry is then appended with `{ intent: true }`.
   */
  async intend(draft: AuditDraft): Promise<void> {
    if (!this.enabled) return;
    if (this.stalled || this.closed) throw auditUnavailable();
    try {
      await this.withTimeout(this.intents.record(storable(draft), new Date()));
    } catch (err) {
      this.logger.error({ err: errorText(err) }, 'audit intent could not be recorded; the request was refused');
      throw auditUnavailable();
    }
  }

  /**
   * `intend` for a change that stores the intent in its own statement (see intents.ts
   * `rowInChange`); null when auditing is off. Throws `auditUnavailable` (→ 503) while the log
   * cannot take entries; `refuse` turns a failure of that statement into the same refusal, which
   * rolls the change back. Its entry is then appended with `{ intent: true }`.
   */
  intentInChange(draft: AuditDraft): ChangeIntent | null {
    if (!this.enabled) return null;
    if (this.stalled || this.closed) throw auditUnavailable();
    return {
      row: this.intents.rowInChange(storable(draft), new Date()),
      refuse: (err) => {
        this.logger.error({ err: errorText(err) }, 'audit intent could not be recorded with its change; the request was refused');
        return auditUnavailable();
      },
      stored: () => undefined,
    };
  }

  /** Resolves once the entry is durable in every sink; rejects (→ 503) otherwise. */
  append(draft: AuditDraft, options: { intent?: boolean; time?: Date } = {}): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.stalled || this.closed) {
      if (options.intent) this.recovery.orphans.add(draft.request_id);
      return Promise.reject(auditUnavailable());
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ draft: storable(draft), time: options.time ?? new Date(), intent: options.intent ?? false, resolve, reject });
      this.kick();
    });
  }

  /**
   * Writes one entry inside the caller's transaction, so that the change and
   * its audit entry commit together or not at all (used for init, whose
   * response carries the only copy of the shares). Line sinks get it before
   * the caller commits; a failure anywhere aborts the caller's change. The
   * request's intent is deleted in the same statement.
   */
  async appendWithin(trx: Transaction<Database>, draft: AuditDraft): Promise<void> {
    if (!this.enabled) return;
    if (this.stalled) throw auditUnavailable();
    try {
      await this.withTimeout(this.writer.commit([{ draft: storable(draft), time: new Date(), intent: true }], trx));
    } catch (err) {
      this.logger.error({ err: errorText(err) }, 'audit write failed; the request was refused');
      throw auditUnavailable();
    } finally {
      // The transaction may still roll back: read the head afresh next time.
      this.writer.forgetHead();
    }
  }

  /** The chain was replaced underneath this server (a restore): its head and last checkpoint are read afresh. */
  forgetHead(): void {
    this.writer.forgetHead();
    this.writer.lastCheckpointSeq = 0;
  }

  /** Recovers due intents now (a dead process's, at start-up), then periodically. */
  async startRecovery(): Promise<void> {
    if (this.enabled) await this.recovery.start();
  }

  /** Appends an entry (outcome "unknown") for every intent that is due; returns how many. */
  recoverIntents(): Promise<number> {
    return this.enabled ? this.recovery.run() : Promise.resolve(0);
  }

  /** Waits for queued entries, writes a final checkpoint, closes the sinks. */
  async close(): Promise<void> {
    this.closing = true;
    this.recovery.stop();
    this.endOutage();
    while (this.flushing) await this.flushing;
    if (this.recovery.orphans.size > 0) await this.recovery.runLogged();
    this.endOutage();
    this.closed = true;
    await this.checkpointNow().catch((err) => this.logger.error({ err: errorText(err) }, 'audit checkpoint at shutdown failed'));
    this.setKey(null);
    await Promise.all(this.options.lines.map((s) => s.close()));
  }

  /** Signs the current head, if the key is present and the head moved since the last checkpoint. */
  async checkpointNow(): Promise<void> {
    if (!this.options.database || !this.checkpointKey) return;
    while (this.flushing) await this.flushing;
    await this.writer.checkpointNow(this.checkpointKey);
  }

  verify(): Promise<VerifyResult> {
    return verifyChain(this.reader, this.checkpointKey);
  }

  search(q: AuditQuery): Promise<{ entries: AuditEntry[]; next_cursor: number | null }> {
    return searchLog(this.reader, q);
  }

  private kick(): void {
    // Outside any job's fence (storage/job-fence.ts): a job's entry may start the drain, which then
    // writes every request's entries; a lease the job lost must not refuse theirs.
    this.flushing ??= outsideJobFence(() => this.drain()).finally(() => {
      this.flushing = null;
      // An entry appended after the drain's last look, in the microtasks of the batch it released
      // (a caller chained on its append), found the drain still running: nobody else would write it.
      if (this.queue.length > 0) this.kick();
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
   * One batch in flight at a time (each is chained after the last). When a
   * batch has been written and more entries queued meanwhile, the next batch
   * is sent before the written one's requests are released: the database
   * works on it while this thread writes those responses, instead of after
   * (PostgreSQL only). Nothing is released or sent early: the next batch
   * follows a committed one.
   */
  private async drain(): Promise<void> {
    let next: { batch: Pending[]; write: Promise<Array<Error | null>> } | null = null;
    while (next || this.queue.length > 0 || this.probeDue) {
      let current = next;
      next = null;
      if (!current) {
        this.probeDue = false;
        await this.gather();
        current = this.cut();
        if (!current) continue;
      }
      const results = await current.write;
      // Not during an outage: settling this batch ends it, and the next one must not carry a second resumed entry.
      // Not on PGlite (exclusive): its queries run on this thread, so nothing would overlap, and the pause in
      // gather() is what gives its batches more than one entry.
      if (this.queue.length > 0 && !this.outage && !this.options.exclusive && results.every((r) => r === null)) next = this.cut();
      this.settle(current.batch, results);
    }
  }

  /** Takes the next batch off the queue and starts writing it; null if there is nothing to write. */
  private cut(): { batch: Pending[]; write: Promise<Array<Error | null>> } | null {
    const batch = this.queue.splice(0, this.options.maxBatch);
    if (this.outage) batch.unshift(this.resumedEntry(this.outage));
    if (batch.length === 0) return null;
    const write = this.withTimeout(this.writeBatch(batch)).catch((err: unknown) =>
      batch.map(() => (err instanceof Error ? err : new Error(String(err)))),
    );
    return { batch, write };
  }

  private settle(batch: Pending[], results: Array<Error | null>): void {
    const failures = results.filter((r): r is Error => r !== null);
    if (failures.length < results.length) {
      if (this.outage) {
        this.logger.warn({ since: this.outage.since.toISOString(), refused: this.outage.refused }, 'audit writes succeed again');
        this.endOutage();
        void this.recovery.runLogged();
      }
    } else if (!failures.every(entrySpecific)) {
      this.startOutage(errorText(failures[0]), batch.filter((p) => !p.system).length);
    }
    if (failures.length > 0) {
      this.logger.error({ err: errorText(failures[0]), entries: batch.length, failed: failures.length }, 'audit write failed; the requests were refused');
    }
    batch.forEach((p, i) => {
      if (results[i] === null) return p.resolve();
      if (p.intent) this.recovery.orphans.add(p.draft.request_id);
      p.reject(auditUnavailable());
    });
  }

  /**
   * Writes a batch; returns per entry null (written) or why not. A batch the
   * database refuses is retried one entry at a time, so an entry that cannot
   * be written fails only its own request. A batch a line sink refuses is
   * recorded in the chain with the outcome its clients get (503).
   */
  private async writeBatch(batch: Pending[]): Promise<Array<Error | null>> {
    try {
      await this.writer.commit(batch);
      return batch.map(() => null);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (error instanceof LineSinkError) return this.refuse(batch, error);
      if (batch.length === 1 || !statementError(error)) return batch.map(() => error);
      this.logger.warn({ err: errorText(error), entries: batch.length }, 'the database refused an audit batch; writing its entries one by one');
      const results: Array<Error | null> = [];
      for (const [i, p] of batch.entries()) {
        try {
          await this.writer.commit([p]);
          results.push(null);
        } catch (single) {
          const e = single instanceof Error ? single : new Error(String(single));
          if (e instanceof LineSinkError) return [...results, ...(await this.refuse(batch.slice(i), e))];
          results.push(e);
          if (!statementError(e)) return [...results, ...batch.slice(i + 1).map(() => e)];
        }
      }
      return results;
    }
  }

  /**
   * A line sink could not take these entries, so their clients get 503. The
   * chain records exactly that (and the status the handler had produced, since
   * its change may have committed), deleting the intents: every sink that has
   * the entry agrees with what the client got.
   */
  private async refuse(batch: Pending[], err: LineSinkError): Promise<Error[]> {
    // The sys.audit.resumed entry is not a request: it is simply tried again later.
    const refused = batch.filter((p) => !p.system).map((p): QueuedEntry => ({
      intent: p.intent,
      time: p.time,
      draft: {
        ...p.draft,
        outcome: 'error',
        status: 503,
        error_code: 'unavailable',
        handler_status: p.draft.status,
        reason: `refused: ${err.message}; the client got 503 instead of the handler's response`,
      },
    }));
    if (this.options.database && refused.length > 0) {
      await this.writer.commit(refused, undefined, { lines: false }).catch((e: unknown) => {
        this.logger.error({ err: errorText(e) }, 'the outcome of requests refused by an audit sink could not be recorded either');
      });
    }
    return batch.map(() => err);
  }

  private startOutage(reason: string, refused: number): void {
    if (this.outage) {
      this.outage.refused += refused;
      this.outage.reason = reason;
      return;
    }
    this.outage = { since: new Date(), refused, reason };
    if (this.closing) return;
    // Without traffic (a load balancer took this server out) nothing would try again.
    this.probeTimer = setInterval(() => {
      this.probeDue = true;
      this.kick();
    }, PROBE_INTERVAL_MS);
    this.probeTimer.unref();
  }

  private endOutage(): void {
    this.outage = null;
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = null;
  }

  private resumedEntry(outage: { since: Date; refused: number; reason: string }): Pending {
    return {
      system: true,
      intent: false,
      time: new Date(),
      resolve: () => {},
      reject: () => {},
      draft: storable(
        systemDraft(SYSTEM_IDENTITY, 'sys.audit.resumed', {
          reason: `audit writes failed from ${outage.since.toISOString()} (last error: ${outage.reason}); ${outage.refused} requests were refused with 503 meanwhile`,
        }),
      ),
    };
  }

  private withTimeout<T>(work: Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.stalled = true;
        reject(new CofferError('unavailable', `audit sink did not answer within ${this.options.timeoutMs} ms`, undefined, 1));
        // Stay refusing until the stuck write settles one way or the other.
        work.then(
          () => (this.stalled = false),
          () => (this.stalled = false),
        );
      }, this.options.timeoutMs);
      work.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }
}
