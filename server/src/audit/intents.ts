/**
 * Write-ahead audit intents: the guarantee that a committed change always has
 * an audit entry.
 *
 * A request's entry can only be written once its outcome is known, that is
 * after its change has committed; an append that fails then (database error,
 * sink failure) or a process that dies in between would leave a change nobody
 * audited. So before the handler of any request that may change state runs,
 * an intent row (request id, time, identity, action, namespace, path, the
 * HMACs of its sensitive fields: the entry as far as it is known, never a
 * value) is made durable here; if it cannot be, the request is refused (503)
 * before it changes anything. The statement that appends the request's entry
 * deletes its intent, so the pair commits together. Intents left behind are
 * claimed by a recovery pass and appended as entries with outcome "unknown"
 * (whether the change took effect is not known).
 *
 * Why not the entry inside the change's own transaction: the outcome (status,
 * error) is decided after the commit, every handler would need the hook, and
 * a chain append inside a long transaction holds the next sequence number
 * against the group commit of every other request (see http/routes/keys.ts).
 * An intent is an independent row: no sequence, no lock, one batched INSERT.
 *
 * Inserts are group-committed like entries: requests arriving together share
 * one INSERT. A route whose change is one transaction (a secret write) records
 * its intent in that transaction instead (`rowInChange`): a committed change
 * still always has its intent, a rolled-back one needs none, and the write
 * waits for one commit less.
 */
import { randomUUID } from 'node:crypto';
import type { AuditIntentsRepo } from '../storage/repos/audit-intents.js';
import type { AuditDraft } from './entry.js';

/** An intent row for a change to store itself. */
export interface IntentRow {
  requestId: string;
  /** The process that recorded it (`AuditIntents.owner`). */
  owner: string;
  time: Date;
  /** The storable draft, as JSON. */
  draft: string;
}

/**
 * A request's intent handed to the change that stores it, with what a failure of the statement
 * storing it becomes: the request is refused as if the intent could not be recorded (503).
 */
export interface ChangeIntent {
  row: IntentRow;
  refuse(err: unknown): Error;
  /** Told once the statement storing it succeeded (its entry then deletes it). */
  stored(): void;
}

export interface ClaimedIntent {
  requestId: string;
  time: Date;
  draft: AuditDraft;
}

interface PendingIntent {
  requestId: string;
  time: Date;
  draft: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class AuditIntents {
  /** This process: intents it recorded carry it, and so do the ones it claims. */
  readonly owner = randomUUID();
  private queue: PendingIntent[] = [];
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly repo: Pick<AuditIntentsRepo, 'insert' | 'claim' | 'count'>,
    private readonly maxBatch: number,
  ) {}

  /** Resolves once the intent is durable; `draft` must already be storable (see storable.ts). */
  record(draft: AuditDraft, time: Date): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ requestId: draft.request_id, time, draft: JSON.stringify(draft), resolve, reject });
      this.flushing ??= this.drain().finally(() => {
        this.flushing = null;
      });
    });
  }

  /**
   * An intent as the caller's change stores it, in the statement of that change (secrets.ts
   * `insertVersionAndPrune`): the two commit together or not at all, without a group commit of
   * their own before the change.
   */
  rowInChange(draft: AuditDraft, time: Date): IntentRow {
    return { requestId: draft.request_id, owner: this.owner, time, draft: JSON.stringify(draft) };
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      // Let every request whose I/O is already pending join this batch (see AuditLog.gather).
      await new Promise((resolve) => setImmediate(resolve));
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        await this.repo.insert(this.owner, batch);
        for (const p of batch) p.resolve();
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        for (const p of batch) p.reject(error);
      }
    }
  }

  /**
   * Claims intents whose entries are due: the given request ids (this process's
   * requests whose append failed), every intent recorded more than `olderThanMs`
   * ago (its request cannot still be running), and, when this process has the
   * database to itself (PGlite: the data directory is locked), every intent of
   * an earlier process at once. Claiming marks the rows, so servers sharing a
   * database never recover the same intent twice; a claim older than
   * `olderThanMs` (the claimer died), or any earlier process's claim on an
   * exclusive database, can be taken over.
   */
  async claim(options: { requestIds: string[]; olderThanMs: number; exclusive: boolean; limit: number }): Promise<ClaimedIntent[]> {
    const rows = await this.repo.claim({ ...options, owner: this.owner });
    return rows.map((r) => ({ requestId: r.request_id, time: new Date(r.time), draft: JSON.parse(r.draft) as AuditDraft }));
  }

  /** Intents not (yet) turned into entries, in-flight requests included. */
  count(): Promise<number> {
    return this.repo.count();
  }
}
