/**
 * Cluster-wide locks for background jobs (jobs/scheduler.ts): while a server
 * holds a job's lock, no other server sharing the database runs that job.
 *
 * PostgreSQL: a session-level advisory lock per job, taken on one dedicated
 * connection opened for the purpose, not borrowed from the pool. A pooled
 * connection would be handed back between queries (a session lock must stay
 * on its session), and a lock waiting for a pool slot starves when a database
 * restart leaves the pool busy reconnecting (vault#17643). When that
 * connection breaks, PostgreSQL drops the locks with the session: every held
 * lock reports itself lost (its signal aborts) so the job stops at its next
 * step, and the next acquisition opens a new connection.
 *
 * Taking a lock also takes the job's next fencing epoch (job-fence.ts): a
 * server whose lock was lost while its job was still running cannot commit
 * that job's work once the next holder has its epoch.
 *
 * PGlite: one process owns the data directory, so an in-process set of held
 * names per storage is the whole lock (no epoch: there is no one to fence).
 */
import { hostname } from 'node:os';
import pg from 'pg';
import type { JobFence } from './job-fence.js';
import { bumpJobLease } from './repos/job-leases.js';

/** First key of the two-key advisory lock: "Coffer job". The second is the job name's hash. */
export const JOB_LOCK_CLASS = 0x0c0ffe02;
/** A connection attempt that hangs (a host that drops packets) fails the acquisition instead. */
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * How long taking the epoch waits for the previous holder's transaction that
 * is between its fence check and its COMMIT (a process paused right there):
 * the acquisition then fails and is retried later, rather than hanging.
 */
const LEASE_LOCK_TIMEOUT_MS = 5_000;

export interface HeldJobLock {
  /** Aborted when the lock may be gone (its connection broke): stop before the next step. */
  readonly lost: AbortSignal;
  /** The epoch taken with the lock, for the job's transactions (job-fence.ts); null where nothing needs fencing (PGlite). */
  readonly fence: JobFence | null;
  /** Gives the lock back; never throws (a broken connection has given it back already). */
  release(): Promise<void>;
}

export interface JobLocks {
  /**
   * Takes the job's lock if no one holds it (this process included); null when
   * it is held. Throws when the database cannot be reached.
   */
  tryAcquire(job: string): Promise<HeldJobLock | null>;
  close(): Promise<void>;
}

/** For a store only this process uses (PGlite). */
export class LocalJobLocks implements JobLocks {
  private readonly held = new Set<string>();

  async tryAcquire(job: string): Promise<HeldJobLock | null> {
    if (this.held.has(job)) return null;
    this.held.add(job);
    let released = false;
    return {
      lost: new AbortController().signal,
      fence: null,
      release: async () => {
        if (released) return;
        released = true;
        this.held.delete(job);
      },
    };
  }

  async close(): Promise<void> {}
}

interface Session {
  client: pg.Client;
  /** Aborted when the connection breaks. */
  broken: AbortController;
  /** The last query asked for: pg wants one query at a time per client (queueing is deprecated). */
  tail: Promise<unknown>;
}

/** Runs `text` on the session after the queries asked for before it. */
function query<R extends pg.QueryResultRow>(session: Session, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  const run = session.tail.then(() => session.client.query<R>(text, values));
  session.tail = run.catch(() => undefined);
  return run;
}

export class PostgresJobLocks implements JobLocks {
  private session: Promise<Session> | null = null;
  /** The connected session, once `session` has resolved. */
  private live: Session | null = null;
  /** Names held through this object: advisory locks are re-entrant within a session, so a second taker here must be refused by hand. */
  private readonly held = new Set<string>();
  private closed = false;

  constructor(
    private readonly connectionString: string,
    /** Told when the lock connection breaks (for the log); the next acquisition reconnects. */
    private readonly onLost: (err: Error) => void = () => {},
    /** Who holds a job, in job_leases (for an operator reading the table). */
    private readonly holder: string = `${hostname()}-${process.pid}`,
  ) {}

  async tryAcquire(job: string): Promise<HeldJobLock | null> {
    if (this.closed) throw new Error('job locks are closed');
    if (this.held.has(job)) return null;
    this.held.add(job);
    try {
      const session = await this.connect();
      const { rows } = await query<{ ok: boolean }>(session, 'select pg_try_advisory_lock($1::int, hashtext($2::text)) as ok', [JOB_LOCK_CLASS, job]);
      if (!rows[0]?.ok) {
        this.held.delete(job);
        return null;
      }
      let epoch: number;
      try {
        epoch = await bumpJobLease((text, values) => query(session, text, values), job, this.holder);
      } catch (err) {
        // Without an epoch the job must not run: give the lock back.
        await query(session, 'select pg_advisory_unlock($1::int, hashtext($2::text))', [JOB_LOCK_CLASS, job]).catch(() => undefined);
        throw err;
      }
      return this.heldLock(job, session, { job, epoch });
    } catch (err) {
      this.held.delete(job);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const session = this.session;
    this.session = null;
    this.live = null;
    if (!session) return;
    const s = await session.catch(() => null);
    if (!s) return;
    s.broken.abort();
    // Ending the session gives back every lock still held.
    await s.client.end().catch(() => {});
  }

  private heldLock(job: string, session: Session, fence: JobFence): HeldJobLock {
    let released = false;
    return {
      lost: session.broken.signal,
      fence,
      release: async () => {
        if (released) return;
        released = true;
        this.held.delete(job);
        if (session.broken.signal.aborted) return;
        await query(session, 'select pg_advisory_unlock($1::int, hashtext($2::text))', [JOB_LOCK_CLASS, job]).catch(() => undefined);
      },
    };
  }

  /** The live session, opening one if there is none. */
  private connect(): Promise<Session> {
    if (this.session) return this.session;
    const opening = this.open();
    this.session = opening;
    // A failed attempt is not kept: the next acquisition tries again.
    opening.catch(() => {
      if (this.session === opening) this.session = null;
    });
    return opening;
  }

  private async open(): Promise<Session> {
    const client = new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true });
    const session: Session = { client, broken: new AbortController(), tail: Promise.resolve() };
    // Every 'error' needs a listener (an unhandled one ends the process); an error and then the end can both come.
    const lost = (err?: Error) => {
      if (session.broken.signal.aborted) return;
      session.broken.abort();
      if (this.live === session) {
        this.live = null;
        this.session = null;
        if (!this.closed) this.onLost(err ?? new Error('the job lock connection ended'));
      }
      client.end().catch(() => {});
    };
    client.on('error', lost);
    client.on('end', () => lost());
    try {
      await client.connect();
      await client.query(`set lock_timeout = ${LEASE_LOCK_TIMEOUT_MS}`);
    } catch (err) {
      session.broken.abort();
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      session.broken.abort();
      await client.end().catch(() => {});
      throw new Error('job locks are closed');
    }
    this.live = session;
    return session;
  }
}
