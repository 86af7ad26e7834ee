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
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { KekStatus, ShredSchedule } from '@coffer/sdk/api';
import type { Keyring } from '../keyring/keyring.js';
import { addEncryptions, type KekUsage } from '../keyring/usage.js';
import type { Database } from '../storage/schema.js';
import { applyLocally, publishChange, type Changes } from '../secrets/changes.js';
import { countDeksToRewrap, retireUnreferenced, type NamespaceService } from '../secrets/namespace-service.js';
import { NamespaceShredder, SHRED_DEFAULT_DAYS } from './shred.js';

/** First key of the two-key advisory lock: "Coffer rewrap". The second is the namespace's hash. */
const REWRAP_LOCK = 0x0c0ffe01;

export interface KekLifecycleOptions {
  rewrapBatchSize: number;
  rewrapBatchDelayMs: number;
  jobIntervalMs: number;
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
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Only a started runner (COFFER_KEK_RUN_JOBS) acts on kicks; otherwise the jobs are driven by hand. */
  private started = false;
  private readonly shredder: NamespaceShredder;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly keyring: Keyring,
    private readonly namespaces: NamespaceService,
    private readonly changes: Changes,
    private readonly usage: KekUsage,
    private readonly options: KekLifecycleOptions,
  ) {
    this.shredder = new NamespaceShredder(db, keyring, changes, usage, { onEvent: options.onEvent, record: (event) => this.record(event) });
  }

  // --- status -------------------------------------------------------------

  async status(name: string): Promise<KekStatus> {
    // One snapshot: separate reads could show a completed job next to versions not yet retired.
    const { row, keys, job, remaining } = await this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        const ns = await this.namespaces.resolve(name, trx, { allowDisabled: true });
        const row = await trx.selectFrom('namespaces').selectAll().where('id', '=', ns.id).executeTakeFirstOrThrow();
        const keys = await trx.selectFrom('namespace_keys').selectAll().where('namespace_id', '=', ns.id).orderBy('version').execute();
        const job = await trx.selectFrom('kek_rewrap_jobs').selectAll().where('namespace_id', '=', ns.id).executeTakeFirst();
        const remaining = job && job.state === 'running' ? await countDeksToRewrap(trx, ns.id, job.target_version) : 0;
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
      const { rows: lock } = await sql<{ ok: boolean }>`
        select pg_try_advisory_xact_lock(${REWRAP_LOCK}::int, hashtext(${namespaceId}::text)) as ok`.execute(trx);
      if (!lock[0]?.ok) return 'busy';
      // FOR SHARE: a rotation (FOR UPDATE) waits for this batch, then restarts the job.
      const ns = await trx
        .selectFrom('namespaces')
        .select(['id', 'name', 'current_kek_version', 'deletion_date'])
        .where('id', '=', namespaceId)
        .forShare()
        .executeTakeFirst();
      const job = await trx
        .selectFrom('kek_rewrap_jobs')
        .selectAll()
        .where('namespace_id', '=', namespaceId)
        .forUpdate()
        .executeTakeFirst();
      // A namespace waiting to be shredded keeps its DEKs where they are.
      if (!ns || !job || job.state !== 'running' || ns.deletion_date) return 'idle';
      const target = job.target_version;
      // Lock the target version's row before any DEK row: a write that reserves usage counts
      // takes it before touching secret_versions too, so the two never wait on each other in a cycle.
      await trx
        .selectFrom('namespace_keys')
        .select('version')
        .where('namespace_id', '=', namespaceId)
        .where('version', '=', target)
        .forUpdate()
        .execute();
      // The batch's last path: the batchSize-th secret after the cursor (none: this is the last batch).
      let bound = trx
        .selectFrom('secrets')
        .select('path')
        .where('namespace_id', '=', namespaceId)
        .orderBy('path')
        .offset(this.options.rewrapBatchSize - 1)
        .limit(1);
      if (job.cursor_path !== null) bound = bound.where('path', '>', job.cursor_path);
      const last = (await bound.executeTakeFirst())?.path ?? null;
      let query = trx
        .selectFrom('secret_versions as v')
        .innerJoin('secrets as s', 's.id', 'v.secret_id')
        .select(['v.secret_id', 'v.version', 'v.kek_version', 'v.wrapped_dek'])
        .where('s.namespace_id', '=', namespaceId)
        .where('v.wrapped_dek', 'is not', null)
        .where('v.kek_version', '<>', target)
        .forUpdate('v');
      if (job.cursor_path !== null) query = query.where('s.path', '>', job.cursor_path);
      if (last !== null) query = query.where('s.path', '<=', last);
      const rows = await query.execute();
      const deks = rows.map((r) => ({ secretId: r.secret_id, version: r.version, kekVersion: r.kek_version!, wrappedDek: r.wrapped_dek! }));
      const rewrapped = deks.length > 0 ? await this.keyring.rewrapDeks(namespaceId, target, deks, trx) : [];
      if (deks.length > 0) {
        // Three array parameters instead of three per row: far less to bind and parse.
        await sql`
          update secret_versions as v set wrapped_dek = d.w, kek_version = ${target}::int
          from unnest(${deks.map((d) => d.secretId)}::uuid[], ${deks.map((d) => d.version)}::int[], ${rewrapped}::bytea[])
            as d(secret_id, version, w)
          where v.secret_id = d.secret_id and v.version = d.version`.execute(trx);
      }
      // Rewraps are encryptions under the target version too.
      if (deks.length > 0) await addEncryptions(trx, namespaceId, target, deks.length);
      const now = new Date();
      if (last !== null) {
        await trx
          .updateTable('kek_rewrap_jobs')
          .set({ cursor_path: last, rewrapped: Number(job.rewrapped) + deks.length, updated_at: now })
          .where('namespace_id', '=', namespaceId)
          .execute();
        return 'more';
      }
      // Past the last secret. Nothing can be left (writes since the rotation use the target);
      // if something is, it came from outside Coffer: start another pass rather than retire wrongly.
      if ((await countDeksToRewrap(trx, namespaceId, target)) > 0) {
        await trx
          .updateTable('kek_rewrap_jobs')
          .set({ cursor_path: null, rewrapped: Number(job.rewrapped) + deks.length, updated_at: now })
          .where('namespace_id', '=', namespaceId)
          .execute();
        return 'more';
      }
      await trx
        .updateTable('kek_rewrap_jobs')
        .set({ state: 'completed', cursor_path: null, rewrapped: Number(job.rewrapped) + deks.length, updated_at: now, completed_at: now })
        .where('namespace_id', '=', namespaceId)
        .execute();
      await retireUnreferenced(trx, namespaceId, target);
      // Cached rows still name the old version (still readable): drop them so no cache refers to retired keys.
      await publishChange(this.changes, trx, { kind: 'namespace', namespace: ns.name });
      completedNamespace = ns.name;
      completedTarget = target;
      return 'completed';
    });
    if (completedNamespace !== null) {
      applyLocally(this.changes, { kind: 'namespace', namespace: completedNamespace });
      this.options.onEvent('kek rewrap completed', { namespace: completedNamespace });
      await this.record({ action: 'namespace.kek.retire', namespace: completedNamespace, kekVersion: completedTarget });
    }
    return outcome;
  }

  /** Runs every running rewrap job to completion (or until stopped, or another server has it). */
  async runRewrapJobs(): Promise<void> {
    const jobs = await this.db.selectFrom('kek_rewrap_jobs').select('namespace_id').where('state', '=', 'running').execute();
    for (const { namespace_id } of jobs) {
      for (;;) {
        if (this.stopped) return;
        const outcome = await this.rewrapBatch(namespace_id);
        if (outcome !== 'more') break;
        if (this.options.rewrapBatchDelayMs > 0) await delay(this.options.rewrapBatchDelayMs);
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
  async rotateDue(now = new Date()): Promise<number> {
    const candidates = await this.db
      .selectFrom('namespaces as n')
      .innerJoin('namespace_keys as k', (join) => join.onRef('k.namespace_id', '=', 'n.id').onRef('k.version', '=', 'n.current_kek_version'))
      .select(['n.id', 'n.name'])
      .where('n.deletion_date', 'is', null)
      .where((eb) =>
        eb.or([
          eb.and([
            eb('n.rotation_period_seconds', 'is not', null),
            sql<boolean>`k.created_at + make_interval(secs => n.rotation_period_seconds) <= ${now}`,
          ]),
          sql<boolean>`k.encryptions >= ${this.usage.limit}`,
        ]),
      )
      .execute();
    let rotated = 0;
    for (const candidate of candidates) {
      if (this.stopped) break;
      const result = await this.db.transaction().execute(async (trx) => {
        const ns = await trx
          .selectFrom('namespaces as n')
          .innerJoin('namespace_keys as k', (join) => join.onRef('k.namespace_id', '=', 'n.id').onRef('k.version', '=', 'n.current_kek_version'))
          .leftJoin('kek_rewrap_jobs as j', 'j.namespace_id', 'n.id')
          .select(['n.rotation_period_seconds', 'n.deletion_date', 'k.created_at', 'k.encryptions', 'j.state as job_state'])
          .where('n.id', '=', candidate.id)
          .forUpdate('n')
          .executeTakeFirst();
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
    this.kick();
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

  // --- background runner --------------------------------------------------

  /** Starts the periodic run (and runs once now: a restarted server resumes interrupted jobs at once). */
  start(): void {
    this.stopped = false;
    this.started = true;
    this.timer = setInterval(() => this.kick(), this.options.jobIntervalMs);
    this.timer.unref();
    this.kick();
  }

  /** Asks for a run soon (after a rotation or when a write reached the usage limit). */
  kick(): void {
    if (this.stopped || !this.started) return;
    void this.runOnce().catch((err: unknown) => this.options.onError('kek lifecycle run failed', err));
  }

  /**
   * One pass: due rotations, due shreds, then rewrap jobs. Concurrent calls
   * join the pass in progress, which then runs once more.
   */
  runOnce(now?: Date): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.step('rotation', () => this.rotateDue(now ?? new Date()));
          await this.step('shredding', () => this.sweepShredding(now ?? new Date()));
          await this.step('rewrap', () => this.runRewrapJobs());
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Stops the runner; resolves when the batch in flight (if any) has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async step(what: string, fn: () => Promise<unknown>): Promise<void> {
    if (this.stopped) return;
    try {
      await fn();
    } catch (err) {
      // Retried at the next run; one namespace's failure must not stop the others' work forever.
      this.options.onError(`kek lifecycle ${what} failed`, err);
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
