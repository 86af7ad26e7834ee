/**
 * Fencing for background jobs: a server that lost a job's cluster lock must
 * not commit the job's work after another server took the lock over.
 *
 * The lock (job-locks.ts) is a session advisory lock on a dedicated
 * connection. When PostgreSQL ends that session (a network partition, a
 * process paused with SIGSTOP or a long GC whose socket was then cut,
 * pg_terminate_backend), the lock is free at once, but the old holder's job
 * keeps running on pooled connections: it learns of the loss only when its
 * event loop next turns, and a transaction it had begun commits regardless.
 *
 * The token: job_leases holds an epoch per job. Whoever takes the advisory
 * lock bumps the epoch on its lock connection and remembers the new value.
 * Every read-write transaction a job opens (found through AsyncLocalStorage,
 * so services need not pass anything) runs, just before COMMIT,
 * `select epoch ... for share`, and rolls back if the epoch is not its own.
 * The share lock is held to the COMMIT, and the next holder's bump is an
 * UPDATE of that row, so the two are ordered: either the old holder's
 * transaction commits first and the new holder starts after it, or the bump
 * commits first and the old holder's check sees the new epoch and rolls back
 * (in READ COMMITTED the locking read returns the newest committed row; in
 * REPEATABLE READ it fails with a serialization error — a refusal too).
 *
 * Why not ask whether the lock is still held (pg_locks, or the lock
 * connection's backend pid being alive) instead: that check and the COMMIT
 * are two moments with nothing between them that the next holder must wait
 * for — the lock can be lost and the other server can write in that gap. A
 * row lock taken by the check and held to COMMIT closes it. Checking at COMMIT
 * rather than at BEGIN also means a holder paused mid-transaction does not
 * keep the next one from taking over (only the instant between check and
 * COMMIT does); a transaction whose check fails rolls back everything it did.
 *
 * Only the job's run is fenced: the scope ends with the run, so a timer or
 * loop the run happened to start (its context outlives it) is not checked
 * afterwards, and machinery shared with requests that a job may set going
 * (the audit log's batch writer) leaves the scope explicitly
 * (`outsideJobFence`): one server's lost lease must not refuse its requests'
 * audit entries.
 *
 * Read-only transactions are not checked (they write nothing, and FOR SHARE
 * is refused in them). Single statements outside a transaction are not
 * fenced: jobs write in transactions. PGlite has one process, so its locks
 * carry no epoch and nothing is checked.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { DatabaseConnection, Dialect, Driver, Kysely, QueryCompiler, TransactionSettings } from 'kysely';
import { lockedJobEpoch } from './repos/job-leases.js';

export interface JobFence {
  job: string;
  /** The epoch this holder took with the lock. */
  epoch: number;
}

/** A job's transaction refused because another server has taken the job over since. */
export class JobFencedError extends Error {
  constructor(readonly fence: JobFence, readonly current: number | null) {
    super(`job ${fence.job} lost its lease (epoch ${fence.epoch}, now ${current ?? 'none'}): its transaction was rolled back`);
    this.name = 'JobFencedError';
  }
}

interface Scope {
  fence: JobFence;
  /** False once the run has ended. */
  active: boolean;
}

const current = new AsyncLocalStorage<Scope | null>();

/**
 * Fenced runs in progress. On Node 20 an AsyncLocalStorage in use installs a
 * promise hook that runs for every promise in the process (each request's too:
 * a few per cent of a read's CPU). It is switched on only while a job's fenced
 * run is in progress, and off again (`disable`) when the last one ends; with no
 * run in progress no context can carry a fence, so `getStore()` having nothing
 * then is the right answer. A scope stays attached to what its run started, and
 * `active` still ends it, if the storage is switched on again later.
 */
let fencedRuns = 0;

/** Runs `work` so that every transaction it opens commits only while `fence` holds (null: unfenced). */
export async function runFenced<T>(fence: JobFence | null, work: () => Promise<T>): Promise<T> {
  if (!fence) return outsideJobFence(work);
  const scope: Scope = { fence, active: true };
  fencedRuns++;
  try {
    return await current.run(scope, work);
  } finally {
    scope.active = false;
    if (--fencedRuns === 0) current.disable();
  }
}

/** Runs `work` outside any job's fence: for work shared with requests that a job may start. */
export function outsideJobFence<T>(work: () => T): T {
  // Without a fenced run in progress the storage is off and no context is fenced.
  return fencedRuns === 0 ? work() : current.run(null, work);
}

/** Whether the context-tracking hook is on (tests: it is off between jobs' runs). */
export function fenceTrackingActive(): boolean {
  return fencedRuns > 0;
}

/** The fence of the job whose run is in progress here, if any. */
export function currentFence(): JobFence | null {
  const scope = current.getStore();
  return scope?.active ? scope.fence : null;
}

/** Wraps a dialect's driver so that job transactions are fenced (PostgreSQL). */
export function fencedDialect(inner: Dialect): Dialect {
  return {
    createAdapter: () => inner.createAdapter(),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createIntrospector: (db: Kysely<unknown>) => inner.createIntrospector(db),
    createDriver: () => new FencedDriver(inner.createDriver()),
  };
}

type Abortable = Parameters<Driver['init']>[0];

class FencedDriver implements Driver {
  /** The fence each open transaction began under (taken at BEGIN, where the job's context is certain). */
  private readonly open = new WeakMap<DatabaseConnection, JobFence>();

  constructor(private readonly inner: Driver) {}

  init(options?: Abortable): Promise<void> {
    return this.inner.init(options);
  }

  acquireConnection(options?: Abortable): Promise<DatabaseConnection> {
    return this.inner.acquireConnection(options);
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await this.inner.beginTransaction(connection, settings);
    const fence = currentFence();
    if (fence && settings.accessMode !== 'read only') this.open.set(connection, fence);
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const fence = this.open.get(connection);
    this.open.delete(connection);
    if (fence) {
      // Kysely rolls back when this throws.
      const epoch = await lockedJobEpoch(connection, fence.job);
      if (epoch !== fence.epoch) throw new JobFencedError(fence, epoch);
    }
    await this.inner.commitTransaction(connection);
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    this.open.delete(connection);
    await this.inner.rollbackTransaction(connection);
  }

  async savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    if (!this.inner.savepoint) throw new Error('the driver has no savepoints');
    await this.inner.savepoint(connection, name, compile);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    if (!this.inner.rollbackToSavepoint) throw new Error('the driver has no savepoints');
    await this.inner.rollbackToSavepoint(connection, name, compile);
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    if (!this.inner.releaseSavepoint) throw new Error('the driver has no savepoints');
    await this.inner.releaseSavepoint(connection, name, compile);
  }

  releaseConnection(connection: DatabaseConnection, options?: Abortable): Promise<void> {
    return this.inner.releaseConnection(connection, options);
  }

  destroy(options?: Abortable): Promise<void> {
    return this.inner.destroy(options);
  }
}
