// The job scheduler with the in-process lock PGlite uses: runs at start and on kicks, one run
// at a time, stop waits for the running job, back-off after failures, and the lock keeps a
// second scheduler on the same store from running the job meanwhile. (PostgreSQL's lock:
// test/integration/job-scheduler.test.ts.)
import { JobScheduler, type JobContext, type JobOutcome } from '@coffer/server/jobs/scheduler';
import { LocalJobLocks } from '@coffer/server/storage/job-locks';

const HOUR = 3_600_000;

/** Polls until `cond` holds (no timing assertions: a busy machine only makes it slower). */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A job whose runs wait for `release()` (each run its own gate) and are counted. */
function gatedJob() {
  const job = {
    started: 0,
    finished: 0,
    active: 0,
    maxActive: 0,
    signals: [] as AbortSignal[],
    gates: [] as Array<() => void>,
    release() {
      job.gates.shift()?.();
    },
    async run(ctx: JobContext) {
      job.started++;
      job.active++;
      job.maxActive = Math.max(job.maxActive, job.active);
      job.signals.push(ctx.signal);
      await new Promise<void>((r) => job.gates.push(r));
      job.active--;
      job.finished++;
    },
  };
  return job;
}

const errors: string[] = [];
const observed: Array<[string, JobOutcome]> = [];
function scheduler(locks = new LocalJobLocks(), maxBackoffMs?: number) {
  return new JobScheduler({
    locks,
    onError: (what) => errors.push(what),
    observer: { observe: (job, outcome) => observed.push([job, outcome]) },
    maxBackoffMs,
  });
}
const statusOf = (s: JobScheduler, name = 'j') => s.status().find((j) => j.name === name)!;

const running: JobScheduler[] = [];
afterEach(async () => {
  errors.length = 0;
  observed.length = 0;
  await Promise.all(running.splice(0).map((s) => s.stop()));
});
function started(s: JobScheduler): JobScheduler {
  running.push(s);
  s.start();
  return s;
}

describe('JobScheduler', () => {
  it('runs a job at start, then again when kicked (a kick before start does nothing)', async () => {
    const job = gatedJob();
    const s = scheduler();
    s.add({ name: 'j', intervalMs: HOUR, run: (ctx) => job.run(ctx) });
    s.kick('j');
    expect(job.started).toBe(0);
    started(s);
    await until(() => job.started === 1, 'the first run');
    job.release();
    await until(() => !statusOf(s).running, 'the first run to end');
    expect(statusOf(s)).toMatchObject({ lastOutcome: 'ok', failures: 0, nextDelayMs: HOUR });
    s.kick('j');
    s.kick('unknown-job');
    await until(() => job.started === 2, 'the kicked run');
    job.release();
    await until(() => job.finished === 2, 'the kicked run to end');
    expect(observed).toEqual([
      ['j', 'ok'],
      ['j', 'ok'],
    ]);
  });

  it('runs one at a time: kicks during a run make it go exactly once more', async () => {
    const job = gatedJob();
    const s = scheduler();
    s.add({ name: 'j', intervalMs: HOUR, run: (ctx) => job.run(ctx) });
    started(s);
    await until(() => job.started === 1, 'the first run');
    s.kick('j');
    s.kick('j');
    s.kick('j');
    job.release();
    await until(() => job.started === 2, 'the run the kicks asked for');
    job.release();
    await until(() => !statusOf(s).running, 'the runs to end');
    expect(job.started).toBe(2);
    expect(job.maxActive).toBe(1);
  });

  it('stop tells the running job, waits for it, and starts nothing after', async () => {
    const job = gatedJob();
    const s = scheduler();
    s.add({ name: 'j', intervalMs: HOUR, run: (ctx) => job.run(ctx) });
    started(s);
    await until(() => job.started === 1, 'the first run');
    let stopped = false;
    const stopping = s.stop().then(() => (stopped = true));
    expect(job.signals[0]!.aborted).toBe(true);
    // The job has not finished its step: stop must still be waiting.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(stopped).toBe(false);
    job.release();
    await stopping;
    expect(job.finished).toBe(1);
    s.kick('j');
    await new Promise((r) => setTimeout(r, 50));
    expect(job.started).toBe(1);
  });

  it('backs off after failures (2×, 4×… the interval, capped) and resets after a success', async () => {
    let fail = true;
    let runs = 0;
    // Long waits: no timer fires during the test, every run is a kick's.
    const s = scheduler(undefined, 500_000);
    s.add({
      name: 'j',
      intervalMs: 100_000,
      run: async () => {
        runs++;
        if (fail) throw new Error('the database is down');
      },
    });
    started(s);
    const delays: Array<number | null> = [];
    for (let i = 1; i <= 4; i++) {
      if (i > 1) s.kick('j');
      await until(() => runs === i && !statusOf(s).running, `failed run ${i}`);
      expect(statusOf(s)).toMatchObject({ lastOutcome: 'failed', failures: i });
      delays.push(statusOf(s).nextDelayMs);
    }
    expect(delays).toEqual([200_000, 400_000, 500_000, 500_000]);
    expect(errors).toEqual(Array(4).fill('job j failed'));
    fail = false;
    s.kick('j');
    await until(() => runs === 5 && !statusOf(s).running, 'the successful run');
    expect(statusOf(s)).toMatchObject({ lastOutcome: 'ok', failures: 0, nextDelayMs: 100_000 });
    expect(observed.map(([, o]) => o)).toEqual(['failed', 'failed', 'failed', 'failed', 'ok']);
  });

  it('a kicked run during a failing run does not skip the back-off', async () => {
    const gate: Array<() => void> = [];
    let runs = 0;
    const s = scheduler(undefined, 10 * HOUR);
    s.add({
      name: 'j',
      intervalMs: HOUR,
      run: async () => {
        runs++;
        await new Promise<void>((r) => gate.push(r));
        throw new Error('broken');
      },
    });
    started(s);
    await until(() => gate.length === 1, 'the first run');
    s.kick('j');
    gate.shift()!();
    await until(() => !statusOf(s).running, 'the failed run to end');
    await new Promise((r) => setTimeout(r, 50));
    expect(runs).toBe(1);
    expect(statusOf(s).nextDelayMs).toBe(2 * HOUR);
  });

  it('two schedulers on one store: the lock lets one run the job at a time', async () => {
    const locks = new LocalJobLocks();
    const job = gatedJob();
    const a = scheduler(locks);
    const b = scheduler(locks);
    a.add({ name: 'j', intervalMs: HOUR, run: (ctx) => job.run(ctx) });
    b.add({ name: 'j', intervalMs: HOUR, run: (ctx) => job.run(ctx) });
    b.add({ name: 'other', intervalMs: HOUR, run: async () => undefined });
    started(a);
    await until(() => job.started === 1, "a's run");
    started(b);
    // b found the job's lock taken (and ran its other job, whose lock is its own).
    await until(() => statusOf(b).lastOutcome === 'busy' && statusOf(b, 'other').lastOutcome === 'ok', "b's attempts");
    expect(job.started).toBe(1);
    b.kick('j');
    await until(() => !statusOf(b).running, "b's kicked attempt");
    expect(job.started).toBe(1);
    job.release();
    await until(() => !statusOf(a).running, "a's run to end");
    b.kick('j');
    await until(() => job.started === 2, "b's run once a let go");
    job.release();
    await until(() => job.finished === 2, "b's run to end");
    expect(job.maxActive).toBe(1);
  });

  it('refuses a job declared twice or without an interval', () => {
    const s = scheduler();
    s.add({ name: 'j', intervalMs: 1, run: async () => undefined });
    expect(() => s.add({ name: 'j', intervalMs: 1, run: async () => undefined })).toThrow(/twice/);
    expect(() => s.add({ name: 'k', intervalMs: 0, run: async () => undefined })).toThrow(/interval/);
  });
});
