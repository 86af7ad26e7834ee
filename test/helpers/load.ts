// The bounded read/write load the fault-injection suites (e2e/ha-failover, e2e/db-outage) run
// while they break things: a few concurrent worker loops, each bounded in iterations and in time,
// and a JSON request that never hangs a test (it gives up after 30 s, counted by the caller).

/** One JSON request with a bearer token: status, parsed body (undefined unless JSON), and the headers the suites count. */
export async function loadRequest<B>(base: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let parsed: B | undefined;
  try {
    parsed = text ? (JSON.parse(text) as B) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, retryAfter: res.headers.get('retry-after'), requestId: res.headers.get('x-request-id') };
}

export interface LoadLimits {
  workers: number;
  /** Per worker. */
  maxIterations: number;
  /** The whole load ends this long after it started, whatever the iterations. */
  maxMs: number;
}

/**
 * Runs `step(worker, i)` in `workers` concurrent loops until each has done `maxIterations`, `maxMs`
 * has passed, or `stop()` is called; `stop()` resolves when every loop has finished its step.
 * `step` handles its own errors: one that throws ends that worker's loop (and rejects `stop()`).
 */
export function boundedLoad(limits: LoadLimits, step: (worker: number, i: number) => Promise<void>): { stop(): Promise<void> } {
  let stopping = false;
  const until = Date.now() + limits.maxMs;
  const worker = async (w: number) => {
    for (let i = 0; i < limits.maxIterations && !stopping && Date.now() < until; i++) await step(w, i);
  };
  const done = Promise.all(Array.from({ length: limits.workers }, (_, w) => worker(w)));
  return {
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/**
 * Polls until `count()` reaches `atLeast`; throws after `deadlineMs` (the load made no progress).
 * `check` runs on every poll, to fail fast (e.g. the server under test died).
 */
export async function untilProgress(count: () => number, atLeast: number, deadlineMs: number, check?: () => void): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (count() < atLeast) {
    check?.();
    if (Date.now() > deadline) throw new Error(`the load made no progress (${count()} writes acknowledged)`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
