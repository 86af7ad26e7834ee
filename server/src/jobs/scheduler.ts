/**
 * The one scheduler for background work. A job is declared (name, interval,
 * run function); the scheduler runs it at start, every interval after that,
 * and soon after a `kick` (work became due: a rotation, a usage limit).
 *
 * - Once across the cluster: every run holds the job's lock (storage/
 *   job-locks.ts: a PostgreSQL advisory lock on a dedicated connection, an
 *   in-process one on PGlite). A server that finds the lock taken skips the
 *   run: another server is doing the work.
 * - One run at a time per job on this server; a kick during a run makes the
 *   run go once more when it ends (the kick's work may have come after the
 *   run looked).
 * - Fenced: the run's transactions commit only while the lock's epoch is
 *   still the newest (storage/job-fence.ts), so a server that lost the lock
 *   mid-run (paused, cut off) cannot write after another server took over.
 * - Back-off: after a failure the next run waits twice the interval, then
 *   four times…, up to `maxBackoffMs`, so a broken database or HSM is not
 *   hammered; a success resets it. A kick still runs the job at once.
 * - Stop: no new run starts; the running one is told through its signal
 *   (also aborted when the lock is lost) and awaited, so a job's step (a
 *   transaction) is never cut in half by a seal or a shutdown.
 */
import { runFenced } from '../storage/job-fence.js';
import type { JobLocks } from '../storage/job-locks.js';

export interface JobContext {
  /** Aborted when the scheduler stops or the job's lock is lost: finish the step in hand, start no other. */
  signal: AbortSignal;
}

export interface JobSpec {
  /** Unique per scheduler, and the lock's name across the cluster. */
  name: string;
  intervalMs: number;
  run(ctx: JobContext): Promise<void>;
}

export type JobOutcome = 'ok' | 'failed';

/** Where runs are counted (ops/metrics.ts). */
export interface JobObserver {
  /** A run that held the lock has ended. */
  observe(job: string, outcome: JobOutcome, seconds: number): void;
}

export interface JobStatus {
  name: string;
  running: boolean;
  /** Failures since the last success. */
  failures: number;
  lastRunAt: Date | null;
  lastOutcome: JobOutcome | 'busy' | null;
  /** The wait chosen after the last run (the interval, or longer while backing off); null before the first. */
  nextDelayMs: number | null;
}

export interface SchedulerOptions {
  locks: Pick<JobLocks, 'tryAcquire'>;
  /** A run that threw, or a lock that could not be asked for (never given key material). */
  onError(what: string, err: unknown): void;
  observer?: JobObserver | undefined;
  /** Longest wait after failures (never shorter than the job's interval). Default: ten minutes. */
  maxBackoffMs?: number | undefined;
  /** Wait before retrying a kicked run that found the lock taken elsewhere (capped by the interval). Default: one second. */
  busyRetryMs?: number | undefined;
}

const DEFAULT_MAX_BACKOFF_MS = 600_000;
const DEFAULT_BUSY_RETRY_MS = 1_000;

export class JobScheduler {
  private readonly jobs = new Map<string, ScheduledJob>();
  private started = false;
  private stopped = false;

  constructor(private readonly options: SchedulerOptions) {}

  /** Declares a job; it runs once `start` is called. */
  add(spec: JobSpec): void {
    if (this.jobs.has(spec.name)) throw new Error(`job ${spec.name} is declared twice`);
    if (!(spec.intervalMs > 0)) throw new Error(`job ${spec.name} needs an interval above zero`);
    const job = new ScheduledJob(spec, this.options);
    this.jobs.set(spec.name, job);
    if (this.started && !this.stopped) job.start();
  }

  /** Runs every job now (a restarted server resumes interrupted work at once), then on its interval. */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const job of this.jobs.values()) job.start();
  }

  /** Asks for a run of `name` soon; nothing before start, after stop, or for an unknown job. */
  kick(name: string): void {
    if (!this.started || this.stopped) return;
    this.jobs.get(name)?.kick();
  }

  /** Starts no new run and resolves when the running ones have ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.jobs.values()].map((job) => job.stop()));
  }

  status(): JobStatus[] {
    return [...this.jobs.values()].map((job) => job.status());
  }
}

class ScheduledJob {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private again = false;
  /** A kick is waiting to be served by a run that holds the lock. */
  private kicked = false;
  private stopped = false;
  private failures = 0;
  private lastRunAt: Date | null = null;
  private lastOutcome: JobOutcome | 'busy' | null = null;
  private nextDelayMs: number | null = null;

  constructor(
    private readonly spec: JobSpec,
    private readonly options: SchedulerOptions,
  ) {}

  start(): void {
    this.fire();
  }

  kick(): void {
    if (this.stopped) return;
    this.kicked = true;
    if (this.running) this.again = true;
    else this.fire();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abort?.abort();
    await this.running;
  }

  status(): JobStatus {
    return {
      name: this.spec.name,
      running: this.running !== undefined,
      failures: this.failures,
      lastRunAt: this.lastRunAt,
      lastOutcome: this.lastOutcome,
      nextDelayMs: this.nextDelayMs,
    };
  }

  private fire(): void {
    if (this.stopped || this.running) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    // A throwing onError or observer must not become an unhandled rejection.
    const cycle: Promise<void> = this.cycle()
      .catch(() => undefined)
      .finally(() => {
        if (this.running !== cycle) return;
        this.running = undefined;
        // A kick that came after the cycle's last look (between its end and now).
        if (this.again && this.lastOutcome === 'ok') this.fire();
      });
    this.running = cycle;
  }

  /** Runs until no kick is pending, then schedules the next run. Never rejects. */
  private async cycle(): Promise<void> {
    let outcome: JobOutcome | 'busy';
    do {
      this.again = false;
      outcome = await this.attempt();
    } while (this.again && outcome === 'ok' && !this.stopped);
    if (this.stopped) return;
    this.nextDelayMs = this.nextDelay(outcome);
    this.schedule(this.nextDelayMs);
  }

  private nextDelay(outcome: JobOutcome | 'busy'): number {
    const interval = this.spec.intervalMs;
    if (outcome === 'failed') {
      const cap = Math.max(interval, this.options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS);
      return Math.min(cap, interval * 2 ** Math.min(this.failures, 30));
    }
    // A kick that found the work in another server's hands: that server may have looked before
    // the kick's work existed, so look again soon rather than a whole interval later.
    if (outcome === 'busy' && this.kicked) return Math.min(interval, this.options.busyRetryMs ?? DEFAULT_BUSY_RETRY_MS);
    return interval;
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.fire();
    }, delayMs);
    // A pending run never keeps the process alive; stop() is what ends a running one.
    this.timer.unref();
  }

  private async attempt(): Promise<JobOutcome | 'busy'> {
    const { name } = this.spec;
    let lock;
    try {
      lock = await this.options.locks.tryAcquire(name);
    } catch (err) {
      this.failures++;
      this.lastOutcome = 'failed';
      this.options.onError(`job ${name}: its lock could not be taken`, err);
      return 'failed';
    }
    if (!lock) {
      this.lastOutcome = 'busy';
      return 'busy';
    }
    if (this.stopped || lock.lost.aborted) {
      // Stopped while asking for the lock (or it is already gone): no run.
      await lock.release();
      return 'busy';
    }
    const abort = new AbortController();
    this.abort = abort;
    const onLost = () => abort.abort();
    lock.lost.addEventListener('abort', onLost);
    this.kicked = false;
    this.lastRunAt = new Date();
    const started = performance.now();
    let outcome: JobOutcome = 'ok';
    try {
      await runFenced(lock.fence, () => this.spec.run({ signal: abort.signal }));
      this.failures = 0;
    } catch (err) {
      outcome = 'failed';
      this.failures++;
      this.options.onError(`job ${name} failed`, err);
    } finally {
      lock.lost.removeEventListener('abort', onLost);
      this.abort = undefined;
      await lock.release();
    }
    this.lastOutcome = outcome;
    this.options.observer?.observe(name, outcome, (performance.now() - started) / 1000);
    return outcome;
  }
}
