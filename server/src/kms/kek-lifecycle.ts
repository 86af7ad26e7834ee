/**
 * The KEK lifecycle of namespaces after creation: status, the resumable
 * rewrap job that moves every DEK to the newest KEK version, rotation on a
 * schedule or at the usage limit, and crypto-shredding with a waiting period
 * (shred.ts).
 *
 * Rewrap job, per namespace (table kek_rewrap_jobs):
 * - a rotation (re)starts it towards the new version with an empty cursor;
 * - each batch is one transaction: it takes the next `batchSize` secrets in
 *   path order after the cursor, rewraps the DEKs of their versions that are
 *   under an older KEK (wrapped_dek and kek_version only; value ciphertexts
 *   are untouched), and moves the cursor — so a crash loses at most the batch
 *   in flight, which rolls back and is redone;
 * - a transaction-scoped advisory lock on the namespace lets one server at a
 *   time work on it when several share PostgreSQL (a dead server's lock goes
 *   with its connection); the others skip it. PGlite is one process anyway;
 * - when the cursor has passed the last secret, the older versions become
 *   'retired' (no DEK references them). Their wrapped KEK is kept until the
 *   namespace is shredded, so a read that fetched a row (or a cached row)
 *   just before it was rewrapped still decrypts: reads never fail during a
 *   rotation.
 *
 * The server runs rotation, shredding and rewrap as scheduler jobs
 * (kek-jobs.ts, jobs/scheduler.ts); the queries are storage/repos/kek-lifecycle.ts.
 */
import type { Kysely, Transaction } from 'kysely';
import type { KekStatus, ShredSchedule } from '@coffer/sdk/api';
import type { Keyring } from '../keyring/keyring.js';
import { addEncryptions, type KekUsage } from '../keyring/usage.js';
import type { KekLifecycleRepo } from '../storage/repos/kek-lifecycle.js';
import type { Database } from '../storage/schema.js';
import { changeEvents } from '../cluster/events.js';
import { applyLocally, publishChange, type Changes } from '../secrets/changes.js';
import { countDeksToRewrap, retireUnreferenced, type NamespaceService } from '../secrets/namespace-service.js';
import { NamespaceShredder, SHRED_DEFAULT_DAYS } from './shred.js';

export interface KekLifecycleOptions {
  rewrapBatchSize: number;
  rewrapBatchDelayMs: number;
  /** Reports background failures (they are retried at the next run). */
  onError: (what: string, err: unknown) => void;
  /** Reports background events worth an operator's attention (rotation, shredding). */
  onEvent: (what: string, fields: Record<string, unknown>) => void;
  /**
   * Records a background change in the audit log once it has committed — as a request's entry
   * is written after its change commits. A failure is reported through onError (the change
   * cannot be undone); the audit log's own fail-closed rule then stops requests.
   */
  audit?: (event: BackgroundAuditEvent) => Promise<void>;
  /**
   * The KMS's named-key versions, also wrapped by the namespace KEK (kms/named-keys): the job
   * moves them to the target version too, and retires an old version only once neither a DEK
   * nor a key version references it.
   */
  namedKeys?: NamedKeyVersions | undefined;
}

/** What the rewrap job needs of the named keys (NamedKeys implements it). */
export interface NamedKeyVersions {
  /** Moves up to `limit` key versions to `target` in `trx`; 0 when none is left. */
  rewrapToKek(namespaceId: string, target: number, trx: Transaction<Database>, limit?: number): Promise<number>;
  countToRewrap(namespaceId: string, target: number, executor?: Transaction<Database>): Promise<number>;
  /** Crypto-shredding: destroys the namespace's HSM-resident key objects (throws while the token cannot be reached). */
  destroyNamespaceDeviceKeys?(namespaceId: string): Promise<void>;
}

/** A change no request asked for: scheduled or usage-limit rotation, retirement, destruction. */
export interface BackgroundAuditEvent {
  action: 'namespace.kek.rotate' | 'namespace.kek.retire' | 'namespace.shred.destroy';
  namespace: string;
  /** The KEK version concerned (the new one for a rotation, the target of the rewrap for a retirement). */
  kekVersion: number | null;
}

type BatchOutcome = 'more' | 'completed' | 'idle' | 'busy';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export class KekLifecycle {
  /** Called when rewrap work became due outside a rotation (a cancelled shred resumes a paused job). */
  onRewrapDue: () => void = () => undefined;
  private readonly shredder: NamespaceShredder;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly repo: KekLifecycleRepo,
    private readonly keyring: Keyring,
    private readonly namespaces: NamespaceService,
    private readonly changes: Changes,
    private readonly usage: KekUsage,
    private readonly options: KekLifecycleOptions,
  ) {
    this.shredder = new NamespaceShredder(db, keyring, changes, usage, {
      onEvent: options.onEvent,
      record: (event) => this.record(event),
      destroyDeviceKeys: options.namedKeys?.destroyNamespaceDeviceKeys ? (id) => options.namedKeys!.destroyNamespaceDeviceKeys!(id) : undefined,
    });
  }

  // --- status -------------------------------------------------------------

  async status(name: string): Promise<KekStatus> {
    // One snapshot: separate reads could show a completed job next to versions not yet retired.
    const { row, keys, job, remaining } = await this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        const ns = await this.namespaces.resolve(name, trx, { allowDisabled: true });
        const row = await this.repo.namespace(ns.id, trx);
        const keys = await this.repo.keys(ns.id, trx);
        const job = await this.repo.jobs.find(ns.id, trx);
        const remaining = job && job.state === 'running' ? await this.countToRewrap(trx, ns.id, job.target_version) : 0;
        return { row, keys, job, remaining };
      });
    const current = keys.find((k) => k.version === row.current_kek_version);
    const period = row.rotation_period_seconds;
    return {
      namespace: name,
      current_version: row.current_kek_version,
      rotation_period: period,
      next_rotation_at: period && current ? iso(new Date(current.created_at.getTime() + period * 1000)) : null,
      usage_limit: this.usage.limit,
      deletion_date: iso(row.deletion_date),
      versions: keys.map((k) => ({
        version: k.version,
        state: k.state,
        origin: k.origin,
        encryptions: Number(k.encryptions),
        created_at: k.created_at.toISOString(),
        retired_at: iso(k.retired_at),
        destroyed_at: iso(k.destroyed_at),
      })),
      rewrap: job
        ? {
            state: job.state,
            target_version: job.target_version,
            total: Number(job.total),
            rewrapped: Number(job.rewrapped),
            remaining,
            started_at: job.started_at.toISOString(),
            updated_at: job.updated_at.toISOString(),
            completed_at: iso(job.completed_at),
          }
        : null,
    };
  }

  // --- rewrap job ---------------------------------------------------------

  /**
   * Runs one batch of a namespace's rewrap job in one transaction.
   * 'more': a batch was done and more remain; 'completed': the job just
   * finished; 'idle': nothing to do; 'busy': another server holds the job.
   */
  async rewrapBatch(namespaceId: string): Promise<BatchOutcome> {
    let completedNamespace: string | null = null;
    let completedTarget = 0;
    const outcome = await this.db.transaction().execute(async (trx): Promise<BatchOutcome> => {
      if (!(await this.repo.tryLockRewrap(namespaceId, trx))) return 'busy';
      const ns = await this.repo.namespaceForBatch(namespaceId, trx);
      const job = await this.repo.jobs.findForUpdate(namespaceId, trx);
      // A namespace waiting to be shredded keeps its DEKs where they are.
      if (!ns || !job || job.state !== 'running' || ns.deletion_date) return 'idle';
      const target = job.target_version;
      await this.repo.lockKeyVersion(namespaceId, target, trx);
      const last = await this.repo.batchEnd(namespaceId, job.cursor_path, this.options.rewrapBatchSize, trx);
      const deks = await this.repo.deksToRewrap(namespaceId, target, job.cursor_path, last, trx);
      const rewrapped = deks.length > 0 ? await this.keyring.rewrapDeks(namespaceId, target, deks, trx) : [];
      await this.repo.storeRewrapped(deks, rewrapped, target, trx);
      // Rewraps are encryptions under the target version too.
      if (deks.length > 0) await addEncryptions(trx, namespaceId, target, deks.length);
      const now = new Date();
      const done = Number(job.rewrapped) + deks.length;
      if (last !== null) {
        await this.repo.jobs.advance(namespaceId, last, done, now, trx);
        return 'more';
      }
      // Past the last secret: the named keys' versions next (a few per key, so all in this
      // transaction, in batches of the same size).
      let keyVersions = 0;
      const namedKeys = this.options.namedKeys;
      for (let n = 0; namedKeys && (n = await namedKeys.rewrapToKek(namespaceId, target, trx, this.options.rewrapBatchSize)) > 0; ) keyVersions += n;
      if (keyVersions > 0) await addEncryptions(trx, namespaceId, target, keyVersions);
      const finished = done + keyVersions;
      // Nothing can be left (writes since the rotation use the target);
      // if something is, it came from outside Coffer: start another pass rather than retire wrongly.
      if ((await this.countToRewrap(trx, namespaceId, target)) > 0) {
        await this.repo.jobs.advance(namespaceId, null, finished, now, trx);
        return 'more';
      }
      await this.repo.jobs.complete(namespaceId, finished, now, trx);
      await retireUnreferenced(trx, namespaceId, target);
      // Cached rows still name the old version (still readable): drop them so no cache refers to retired keys.
      await publishChange(this.changes, trx, changeEvents.namespace(ns.name));
      completedNamespace = ns.name;
      completedTarget = target;
      return 'completed';
    });
    if (completedNamespace !== null) {
      applyLocally(this.changes, changeEvents.namespace(completedNamespace));
      this.options.onEvent('kek rewrap completed', { namespace: completedNamespace });
      await this.record({ action: 'namespace.kek.retire', namespace: completedNamespace, kekVersion: completedTarget });
    }
    return outcome;
  }

  /** DEKs and named-key versions of a namespace still under a KEK version other than `target`. */
  private async countToRewrap(trx: Transaction<Database>, namespaceId: string, target: number): Promise<number> {
    const keys = this.options.namedKeys ? await this.options.namedKeys.countToRewrap(namespaceId, target, trx) : 0;
    return (await countDeksToRewrap(trx, namespaceId, target)) + keys;
  }

  /** Runs every running rewrap job to completion (or until `signal` aborts, or another server has it). */
  async runRewrapJobs(signal?: AbortSignal): Promise<void> {
    for (const namespaceId of await this.repo.jobs.running()) {
      for (;;) {
        if (signal?.aborted) return;
        const outcome = await this.rewrapBatch(namespaceId);
        if (outcome !== 'more') break;
        if (this.options.rewrapBatchDelayMs > 0) await delay(this.options.rewrapBatchDelayMs, signal);
      }
    }
  }

  // --- scheduled and usage-limit rotation ---------------------------------

  /**
   * Rotates every namespace whose current KEK version is older than its
   * rotation period, or has reached the usage limit (then only once its
   * previous rewrap is done, so a limit set below a namespace's DEK count
   * cannot make rotations chase each other). Safe on several servers: the
   * condition is re-checked under the namespace's row lock.
   */
  async rotateDue(now = new Date(), signal?: AbortSignal): Promise<number> {
    const candidates = await this.repo.rotationCandidates(now, this.usage.limit);
    let rotated = 0;
    for (const candidate of candidates) {
      if (signal?.aborted) break;
      const result = await this.db.transaction().execute(async (trx) => {
        const ns = await this.repo.rotationFactsForUpdate(candidate.id, trx);
        if (!ns || ns.deletion_date) return null;
        const scheduled = ns.rotation_period_seconds !== null && ns.created_at.getTime() + ns.rotation_period_seconds * 1000 <= now.getTime();
        const worn = Number(ns.encryptions) >= this.usage.limit && ns.job_state !== 'running';
        if (!scheduled && !worn) return null;
        const rotation = await this.namespaces.rotateKek(candidate.name, {}, trx);
        return { ...rotation, reason: scheduled ? 'schedule' : 'usage_limit' };
      });
      if (result) {
        rotated++;
        this.usage.forgetNamespace(candidate.id);
        this.options.onEvent('kek rotated', { namespace: result.namespace, version: result.version, reason: result.reason });
        await this.record({ action: 'namespace.kek.rotate', namespace: result.namespace, kekVersion: result.version });
      }
    }
    return rotated;
  }

  // --- crypto-shredding (shred.ts) -----------------------------------------

  /** Schedules the destruction of a namespace's key material (7–30 days; default 30). */
  scheduleShred(name: string, pendingWindowDays = SHRED_DEFAULT_DAYS, now = new Date()): Promise<ShredSchedule> {
    return this.shredder.scheduleShred(name, pendingWindowDays, now);
  }

  /** Cancels a scheduled shredding; the namespace is enabled again, nothing was lost. */
  async cancelShred(name: string): Promise<ShredSchedule> {
    const schedule = await this.shredder.cancelShred(name);
    // A rewrap paused by the schedule may go on.
    this.onRewrapDue();
    return schedule;
  }

  /** Destroys every namespace whose deletion date has come. */
  sweepShredding(now = new Date()): Promise<string[]> {
    return this.shredder.sweepShredding(now);
  }

  private async record(event: BackgroundAuditEvent): Promise<void> {
    try {
      await this.options.audit?.(event);
    } catch (err) {
      this.options.onError(`audit entry for ${event.action} could not be written`, err);
    }
  }

  // --- one pass, driven by hand -------------------------------------------

  /**
   * Due rotations, due shreds, then rewrap jobs, in that order. The server runs
   * them as three jobs (kms/kek-jobs.ts); this is the same work for callers that
   * drive it themselves (COFFER_KEK_RUN_JOBS=false). A step's failure is reported
   * and the next step still runs.
   */
  async runOnce(now?: Date, signal?: AbortSignal): Promise<void> {
    await this.step('rotation', () => this.rotateDue(now ?? new Date(), signal));
    if (signal?.aborted) return;
    await this.step('shredding', () => this.sweepShredding(now ?? new Date()));
    if (signal?.aborted) return;
    await this.step('rewrap', () => this.runRewrapJobs(signal));
  }

  private async step(what: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      // Retried at the next run; one namespace's failure must not stop the others' work forever.
      this.options.onError(`kek lifecycle ${what} failed`, err);
    }
  }
}

/** Waits `ms`, or less when `signal` aborts (a stop does not wait out the pause between batches). */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}
