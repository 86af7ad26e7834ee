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
import type { Transaction } from 'kysely';
import type { Database } from '../storage/schema.js';
import { isUniqueViolation } from '../storage/errors.js';
import type { AuditRepo } from '../storage/repos/audit.js';
import type { AuditIntentsRepo } from '../storage/repos/audit-intents.js';
import { GENESIS_HASH, chainHashBinary, signCheckpoint } from './chain.js';
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
  seq: number;
  time: string;
  draft: AuditDraft;
  /** The entry as JSON, `{seq, time, ...draft}`: what the hash covers, the lines carry and the database keeps. */
  body: string;
  /** The chain's hashes as binary strings (chain.ts chainHashBinary). */
  hash?: string;
  prevHash?: string;
}

/**
 * JSON.stringify({ seq, time, ...draft }), without copying the draft into a new object: the
 * draft's JSON with the two leading fields spliced in (same text, same key order). A draft with
 * no fields or with its own seq/time (none has) takes the plain way.
 */
function entryBody(seq: number, time: string, draft: AuditDraft): string {
  const rest = JSON.stringify(draft);
  if (rest.length > 2 && !Object.hasOwn(draft, 'seq') && !Object.hasOwn(draft, 'time')) return `{"seq":${seq},"time":${JSON.stringify(time)},${rest.slice(1)}`;
  const entry: AuditEntry = { seq, time, ...draft };
  return JSON.stringify(entry);
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

const hex = (binary: string) => Buffer.from(binary, 'latin1').toString('hex');
const bytes = (binary: string) => new Uint8Array(Buffer.from(binary, 'latin1'));

export class EntryWriter {
  /** The chain's last entry as this server last saw it; null = read it from the database. */
  private head: { seq: number; hash: Uint8Array } | null = null;
  lastCheckpointSeq = 0;

  constructor(
    private readonly repo: Pick<AuditRepo, 'transaction' | 'append' | 'head' | 'insertCheckpoint'>,
    private readonly intents: Pick<AuditIntentsRepo, 'deleteByRequestIds'>,
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
      const entries = batch.map(({ draft, time }): ChainedEntry => {
        const iso = time.toISOString();
        return { seq: 0, time: iso, draft, body: entryBody(0, iso, draft) };
      });
      await this.writeLines(entries);
      // No chain to delete them with: a crash right here recovers these intents a second time.
      const done = batch.filter((q) => q.intent).map((q) => q.draft.request_id);
      if (done.length > 0) await this.intents.deleteByRequestIds(done, trx);
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
    // Deleted by the same statement (see the header).
    const intents = batch.some((q) => q.intent) ? batch.filter((q) => q.intent).map((q) => q.draft.request_id) : null;
    for (let attempt = 0; attempt < (trx ? 1 : 20); attempt++) {
      this.head ??= await this.loadHead(trx);
      const out = this.chain(batch, this.head);
      try {
        if (lines && !trx) {
          // Commits only once every line sink has the lines (see the header).
          await this.repo.transaction(async (t) => {
            await this.repo.append(out, intents, t);
            await this.writeLines(out);
          });
        } else {
          await this.repo.append(out, intents, trx);
          if (lines) await this.writeLines(out);
        }
      } catch (err) {
        this.head = null;
        // Inside a caller's transaction a failed statement aborts it: no retry there.
        if (isUniqueViolation(err) && !trx) continue;
        throw err;
      }
      const last = out[out.length - 1]!;
      this.head = { seq: last.seq, hash: bytes(last.hash!) };
      await this.checkpointIfDue(trx, out[0]!.seq, last);
      return;
    }
    throw new Error('audit chain: too much contention appending (20 attempts)');
  }

  private chain(batch: QueuedEntry[], head: { seq: number; hash: Uint8Array }): ChainedEntry[] {
    let seq = head.seq;
    let prev = Buffer.from(head.hash).toString('latin1');
    return batch.map(({ draft, time }): ChainedEntry => {
      seq += 1;
      const iso = time.toISOString();
      const body = entryBody(seq, iso, draft);
      const hash = chainHashBinary(prev, body);
      const item: ChainedEntry = { seq, time: iso, draft, body, hash, prevHash: prev };
      prev = hash;
      return item;
    });
  }

  private async checkpointIfDue(trx: Transaction<Database> | undefined, firstSeq: number, last: ChainedEntry): Promise<void> {
    const key = this.checkpointKey();
    const every = this.options.checkpointEvery;
    if (!key || Math.floor(last.seq / every) <= Math.floor((firstSeq - 1) / every)) return;
    const hash = bytes(last.hash!);
    await this.repo.insertCheckpoint({ seq: last.seq, hash, signature: signCheckpoint(key, last.seq, hash) }, trx);
    this.lastCheckpointSeq = last.seq;
  }

  /** Signs the committed head if it moved since the last checkpoint. */
  async checkpointNow(key: Uint8Array): Promise<void> {
    // Entries are immutable once committed: signing the committed head needs no lock.
    const head = await this.loadHead();
    if (head.seq <= this.lastCheckpointSeq) return;
    await this.repo.insertCheckpoint({ seq: head.seq, hash: head.hash, signature: signCheckpoint(key, head.seq, head.hash) });
    this.lastCheckpointSeq = head.seq;
  }

  private async loadHead(trx?: Transaction<Database>): Promise<{ seq: number; hash: Uint8Array }> {
    return (await this.repo.head(trx)) ?? { seq: 0, hash: GENESIS_HASH };
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
