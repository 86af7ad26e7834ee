// Database outages under load, on a real coffer-server (Shamir seal) and a PostgreSQL of its own
// that this suite takes down: terminated backends, a stop / pause / start, and a fast restart.
// The server must stay up and unsealed, answer 503 + Retry-After (never 500) while the database
// is away, serve again without a restart, lose no acknowledged write, and keep its audit chain
// whole with an entry for every acknowledged request.
import pg from 'pg';
import { api, eventually, initAndUnseal, unsealWith } from '../helpers/server.js';
import { describeIfPostgres } from '../helpers/env.js';
import { startServerProcess, type ServerProcess } from '../helpers/process.js';
import { startPrivateCluster, type PrivateCluster } from '../helpers/pg-cluster.js';
import { boundedLoad, loadRequest, untilProgress } from '../helpers/load.js';

const NS = 'fault';
const WORKERS = 4;
/** Per worker and scenario; the load also stops when the scenario says so. */
const MAX_ITERATIONS = 2_000;
const MAX_LOAD_MS = 60_000;
const RECOVERY_DEADLINE_MS = 30_000;
/** Written before any outage; read to see whether the server serves again. */
const PROBE = 'probe';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Set once the server process has ended (the crash this suite guards against), with its last output. */
let serverGone: string | null = null;
function failIfServerGone(): void {
  if (serverGone !== null) throw new Error(`coffer-server exited: ${serverGone}`);
}

interface Outcome {
  kind: 'write' | 'read';
  status: number;
  code?: string | undefined;
  retryAfter: string | null;
  requestId: string | null;
}

interface Load {
  outcomes: Outcome[];
  /** Writes answered 2xx: secret path → value. */
  acknowledged: Map<string, string>;
  /** Requests that got no HTTP response at all (the server gone or hung). */
  transportErrors: string[];
  /** A read right after an acknowledged write that did not return that write. */
  staleReads: string[];
  stop(): Promise<void>;
}

type Reply = { data?: { value?: string }; error?: { code?: string } };
const request = (base: string, token: string, method: string, path: string, body?: unknown) => loadRequest<Reply>(base, token, method, path, body);

/** WORKERS loops, each writing distinct secrets with increasing values and reading each acknowledged one back. */
function startLoad(base: string, token: string, tag: string): Load {
  const load: Load = { outcomes: [], acknowledged: new Map(), transportErrors: [], staleReads: [], stop: async () => {} };
  load.stop = boundedLoad({ workers: WORKERS, maxIterations: MAX_ITERATIONS, maxMs: MAX_LOAD_MS }, async (w, i) => {
    const path = `${tag}/w${w}/s${i}`;
    const value = `${tag}-${w}-${i}`;
    try {
      const put = await request(base, token, 'PUT', `/v1/secrets/${NS}/${path}`, { data: { value } });
      load.outcomes.push({ kind: 'write', status: put.status, code: put.body?.error?.code, retryAfter: put.retryAfter, requestId: put.requestId });
      if (put.status >= 200 && put.status < 300) {
        load.acknowledged.set(path, value);
        const get = await request(base, token, 'GET', `/v1/secrets/${NS}/${path}`);
        load.outcomes.push({ kind: 'read', status: get.status, code: get.body?.error?.code, retryAfter: get.retryAfter, requestId: get.requestId });
        if (get.status !== 503 && (get.status !== 200 || get.body?.data?.value !== value)) load.staleReads.push(`${path}: ${get.status} ${JSON.stringify(get.body)}`);
      } else if (put.status === 503) {
        await sleep(20); // a client honouring Retry-After would wait longer; keep the pressure on
      }
    } catch (err) {
      load.transportErrors.push(`${path}: ${(err as Error).message}`);
      await sleep(50);
    }
  }).stop;
  return load;
}

/** Polls with a write (a read may come from the cache) until one succeeds; returns the milliseconds that took. */
async function recoveryTime(base: string, token: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      const r = await request(base, token, 'PUT', `/v1/secrets/${NS}/${PROBE}`, { data: { value: 'here' } });
      if (r.status === 200) return Date.now() - started;
    } catch {
      /* counted by the load, if it happens there too */
    }
    failIfServerGone();
    if (Date.now() - started > RECOVERY_DEADLINE_MS) throw new Error(`no successful write ${RECOVERY_DEADLINE_MS} ms after the database came back`);
    await sleep(5);
  }
}

const waitForProgress = (load: Load, atLeast: number) => untilProgress(() => load.acknowledged.size, atLeast, 30_000, failIfServerGone);

describeIfPostgres('database outages under load (real server, private PostgreSQL)', () => {
  let cluster: PrivateCluster;
  let server: ServerProcess;
  let token: string;
  let shares: string[];
  const totals = { requests: 0, ok: 0, unavailable: 0, internal: 0, lost: 0 };

  beforeAll(async () => {
    cluster = await startPrivateCluster();
    server = await startServerProcess({ COFFER_DATABASE_URL: cluster.url });
    void server.exited.then((code) => {
      serverGone = `code ${code}\n${server.output().slice(-4000)}`;
    });
    ({ token, shares } = await initAndUnseal(server.url, 3, 2));
    expect((await api(server.url, 'POST', '/v1/namespaces', { token, body: { name: NS } })).status).toBe(201);
    expect((await request(server.url, token, 'PUT', `/v1/secrets/${NS}/${PROBE}`, { data: { value: 'here' } })).status).toBe(200);
  }, 120_000);

  afterAll(async () => {
    await server?.stop('SIGKILL');
    await cluster?.stop();
    console.log(
      `db-outage totals: ${totals.requests} requests, ${totals.ok} 2xx, ${totals.unavailable} 503, ${totals.internal} 500, ${totals.lost} lost writes`,
    );
  });

  /** What an outage must leave behind, checked once the database is back. */
  async function expectSurvived(name: string, load: Load, recovery: string): Promise<void> {
    failIfServerGone();
    expect(load.transportErrors).toEqual([]);

    const fiveHundreds = load.outcomes.filter((o) => o.status >= 500 && o.status !== 503);
    const unavailable = load.outcomes.filter((o) => o.status === 503);
    const unexpected = load.outcomes.filter((o) => o.status !== 503 && (o.status < 200 || o.status >= 300));
    // 503 means the database (or the audit log that lives in it) was away, and says when to come back.
    expect(fiveHundreds).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(unavailable.filter((o) => o.code !== 'unavailable' || !o.retryAfter || !(Number(o.retryAfter) >= 1))).toEqual([]);
    expect(load.staleReads).toEqual([]);

    // Still unsealed: no operator was needed.
    expect((await api(server.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ sealed: false });
    const ready = await api(server.url, 'GET', '/v1/sys/ready');
    expect(ready.status).toBe(200);

    // Every acknowledged write reads back (paths are distinct, so nothing later can mask a loss).
    const lost: string[] = [];
    const entries = [...load.acknowledged];
    for (let i = 0; i < entries.length; i += 8) {
      await Promise.all(
        entries.slice(i, i + 8).map(async ([path, value]) => {
          const r = await request(server.url, token, 'GET', `/v1/secrets/${NS}/${path}`);
          if (r.status !== 200 || r.body?.data?.value !== value) lost.push(`${path}: ${r.status} ${JSON.stringify(r.body)}`);
        }),
      );
    }
    expect(lost).toEqual([]);

    // The chain verifies, and each acknowledged request (its entry was durable before the response) is in it.
    const verify = await api(server.url, 'GET', '/v1/sys/audit/verify', { token });
    expect(verify.status).toBe(200);
    expect(verify.body).toMatchObject({ ok: true, first_broken: null });
    const audited = new Map<string, number>();
    for (let cursor: number | null | undefined; ; ) {
      const page = await api(server.url, 'GET', `/v1/sys/audit?namespace=${NS}&order=asc&limit=1000${cursor ? `&cursor=${cursor}` : ''}`, { token });
      expect(page.status).toBe(200);
      for (const e of page.body.entries as Array<{ request_id: string; status: number }>) audited.set(e.request_id, e.status);
      cursor = page.body.next_cursor as number | null;
      if (cursor === null) break;
    }
    const acked = load.outcomes.filter((o) => o.status >= 200 && o.status < 300);
    expect(acked.filter((o) => !o.requestId || audited.get(o.requestId) !== o.status).map((o) => `${o.kind} ${o.requestId}`)).toEqual([]);

    totals.requests += load.outcomes.length;
    totals.ok += acked.length;
    totals.unavailable += unavailable.length;
    totals.internal += fiveHundreds.length;
    totals.lost += lost.length;
    console.log(
      `db-outage ${name}: ${load.outcomes.length} requests (${load.acknowledged.size} writes acknowledged), ` +
        `${unavailable.length} × 503, ${fiveHundreds.length} × 500, ${lost.length} lost writes, ` +
        `${load.transportErrors.length} transport errors, serving again ${recovery}`,
    );
  }

  it('(a) terminating all of the server\'s backends mid-load, several times', async () => {
    const admin = new pg.Client({ connectionString: cluster.url });
    admin.on('error', () => {});
    await admin.connect();
    failIfServerGone();
    const load = startLoad(server.url, token, 'a');
    const recoveries: number[] = [];
    try {
      await waitForProgress(load, 20);
      for (let round = 0; round < 4; round++) {
        const killed = await admin.query(
          `select pg_terminate_backend(pid) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()`,
        );
        // The pool and the LISTEN connection at least.
        expect(killed.rowCount).toBeGreaterThanOrEqual(2);
        recoveries.push(await recoveryTime(server.url, token));
        const before = load.acknowledged.size;
        await waitForProgress(load, before + 20);
      }
    } finally {
      await load.stop();
      await admin.end();
    }
    await expectSurvived('(a) pg_terminate_backend ×4', load, `${recoveries.join(', ')} ms after each termination`);
  }, 180_000);

  it('(b) PostgreSQL stopped, a pause, started again', async () => {
    failIfServerGone();
    const load = startLoad(server.url, token, 'b');
    let recoveryMs: number;
    try {
      await waitForProgress(load, 20);
      await cluster.pauseServer({ mode: 'fast' });
      const during = load.outcomes.length;
      await sleep(1_500);
      // Requests are answered (503) while the database is away, not held until it returns.
      expect(load.outcomes.length).toBeGreaterThan(during);
      await cluster.resumeServer();
      recoveryMs = await recoveryTime(server.url, token);
      const before = load.acknowledged.size;
      await waitForProgress(load, before + 20);
    } finally {
      await load.stop();
    }
    expect(load.outcomes.some((o) => o.status === 503)).toBe(true);
    await expectSurvived('(b) stop, 1.5 s, start', load, `${recoveryMs} ms after PostgreSQL accepted connections`);
  }, 180_000);

  it('(c) pg_ctl restart (fast) mid-load', async () => {
    failIfServerGone();
    const load = startLoad(server.url, token, 'c');
    const recoveries: number[] = [];
    try {
      for (let round = 0; round < 2; round++) {
        await waitForProgress(load, load.acknowledged.size + 20);
        await cluster.restartServer({ mode: 'fast' });
        recoveries.push(await recoveryTime(server.url, token));
      }
      await waitForProgress(load, load.acknowledged.size + 20);
    } finally {
      await load.stop();
    }
    await expectSurvived('(c) pg_ctl restart -m fast ×2', load, `${recoveries.join(', ')} ms after PostgreSQL accepted connections`);
  }, 180_000);

  it('the change feed is listening again afterwards, and the read cache never served a stale version', async () => {
    failIfServerGone();
    // The LISTEN connection came back by itself.
    const admin = new pg.Client({ connectionString: cluster.url });
    admin.on('error', () => {});
    await admin.connect();
    try {
      const deadline = Date.now() + 20_000;
      let listening = 0;
      while (listening === 0 && Date.now() < deadline) {
        listening = (await admin.query(`select count(*)::int as n from pg_stat_activity where query ilike 'LISTEN %'`)).rows[0].n as number;
        if (listening === 0) await sleep(50);
      }
      expect(listening).toBe(1);
    } finally {
      await admin.end();
    }
    // A second server writes; this one (whose cache held the old version, TTL 60 s) reads the
    // new one within seconds: its cache is invalidated by NOTIFY, or off while the feed is down.
    const other = await startServerProcess({ COFFER_DATABASE_URL: cluster.url });
    try {
      await unsealWith(other.url, shares.slice(0, 2));
      const path = `/v1/secrets/${NS}/feed/probe`;
      expect((await request(server.url, token, 'PUT', path, { data: { value: 'one' } })).status).toBe(200);
      expect((await request(server.url, token, 'GET', path)).body?.data?.value).toBe('one');
      expect((await request(server.url, token, 'GET', path)).body?.data?.value).toBe('one');
      expect((await request(other.url, token, 'PUT', path, { data: { value: 'two' } })).status).toBe(200);
      const seen = await eventually(() => request(server.url, token, 'GET', path), (r) => r.body?.data?.value === 'two', 10_000);
      expect(seen.body?.data?.value).toBe('two');
    } finally {
      await other.stop('SIGKILL');
    }
  }, 60_000);
});
