// Failover behind a real load balancer: HAProxy running the shipped deploy/haproxy/haproxy.cfg
// (health check on /v1/sys/ready; sent again to another server: any request whose connection
// failed, and a read whose server died without answering) in front of three coffer-server
// processes on one PostgreSQL, under a bounded read/write load. One server is killed with SIGKILL (and brought back: restart + unseal), then
// PostgreSQL is restarted. Counted: requests that failed, 500s (must be 0), acknowledged writes
// lost (must be 0), reads older than the version the client wrote (must be 0; reads carry
// min_version and may land on any server), and the time until every server serves again.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitForHttp } from '#lib/child.mjs';
import { describeIfPostgres, strict } from '../helpers/env.js';
import { startPrivateCluster, type PrivateCluster } from '../helpers/pg-cluster.js';
import { shippedHaproxyConfig } from '../helpers/haproxy.js';
import { freePort, runServerCommand } from '../helpers/process.js';
import { api, initAndUnseal, unsealWith } from '../helpers/server.js';
import { boundedLoad, loadRequest, untilProgress } from '../helpers/load.js';

const HAPROXY = '/usr/sbin/haproxy';
const NS = 'ha';
const WORKERS = 4;
/** Per worker; the load also ends after MAX_LOAD_MS. */
const MAX_ITERATIONS = 3_000;
const MAX_LOAD_MS = 120_000;
const SERVE_AGAIN_DEADLINE_MS = 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const describeIfHaproxy = existsSync(HAPROXY) || strict ? describeIfPostgres : describe.skip;

interface Node {
  port: number;
  url: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<number | string>;
}

/** coffer-server on a fixed port (a restarted server must come back where HAProxy looks for it). */
async function startNode(port: number, databaseUrl: string): Promise<Node> {
  const url = `http://127.0.0.1:${port}`;
  const run = runServerCommand([], { COFFER_HOST: '127.0.0.1', COFFER_PORT: String(port), COFFER_DATABASE_URL: databaseUrl, COFFER_LOG_LEVEL: 'warn' });
  let ended = false;
  void run.exited.then(() => (ended = true));
  const up = await waitForHttp(`${url}/v1/sys/health`, { timeoutMs: 30_000, intervalMs: 50, requestTimeoutMs: 0, stopIf: () => ended });
  if (!('status' in up)) throw new Error(`coffer-server on ${port} did not start:\n${run.output()}`);
  return { port, url, ...run };
}

type Reply = { version?: number; data?: { value?: string } };
const request = (base: string, token: string, method: string, path: string, body?: unknown) => loadRequest<Reply>(base, token, method, path, body);

async function ready(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/v1/sys/ready`, { signal: AbortSignal.timeout(2_000) })).status === 200;
  } catch {
    return false;
  }
}

/** Milliseconds until every url answers ready (polled), or a thrown error past the deadline. */
async function untilAllReady(urls: string[], since: number): Promise<number> {
  for (;;) {
    if ((await Promise.all(urls.map(ready))).every(Boolean)) return Date.now() - since;
    if (Date.now() - since > SERVE_AGAIN_DEADLINE_MS) throw new Error('not every server serves again');
    await sleep(50);
  }
}

interface Load {
  statuses: Map<number, number>;
  /** 503s without Retry-After: HAProxy's own (no server up), not Coffer's. */
  balancer503: number;
  transportErrors: number;
  /** What each transport error was, with when it happened (for the report). */
  transportErrorNotes: string[];
  acknowledged: Map<string, { value: string; version: number }>;
  staleReads: string[];
  total(): number;
  stop(): Promise<void>;
}

/** WORKERS loops through HAProxy: write a distinct secret, read it back (any server) with min_version. */
function startLoad(base: string, token: string): Load {
  const load: Load = {
    statuses: new Map(),
    balancer503: 0,
    transportErrors: 0,
    transportErrorNotes: [],
    acknowledged: new Map(),
    staleReads: [],
    total: () => [...load.statuses.values()].reduce((a, b) => a + b, 0) + load.transportErrors,
    stop: async () => {},
  };
  const count = (r: { status: number; retryAfter: string | null }) => {
    load.statuses.set(r.status, (load.statuses.get(r.status) ?? 0) + 1);
    if (r.status === 503 && !r.retryAfter) load.balancer503++;
  };
  load.stop = boundedLoad({ workers: WORKERS, maxIterations: MAX_ITERATIONS, maxMs: MAX_LOAD_MS }, async (w, i) => {
    const path = `w${w}/s${i}`;
    const value = `v-${w}-${i}`;
    let stage = 'PUT';
    try {
      const put = await request(base, token, 'PUT', `/v1/secrets/${NS}/${path}`, { data: { value } });
      count(put);
      if (put.status === 200 && put.body?.version) {
        load.acknowledged.set(path, { value, version: put.body.version });
        // Update it once more, so that a cached older version somewhere could be served.
        stage = 'PUT again';
        const again = await request(base, token, 'PUT', `/v1/secrets/${NS}/${path}`, { data: { value: `${value}+` } });
        count(again);
        if (again.status === 200 && again.body?.version) load.acknowledged.set(path, { value: `${value}+`, version: again.body.version });
        const want = load.acknowledged.get(path)!;
        stage = 'GET';
        const get = await request(base, token, 'GET', `/v1/secrets/${NS}/${path}?min_version=${want.version}`);
        count(get);
        if (get.status === 200 && (get.body?.version ?? 0) < want.version) load.staleReads.push(`${path}: v${get.body?.version} < v${want.version}`);
      } else if (put.status >= 500) {
        await sleep(100);
      }
    } catch (err) {
      load.transportErrors++;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      load.transportErrorNotes.push(`${new Date().toISOString()} ${stage} ${String(err)} ${cause?.code ?? cause?.message ?? ''}`);
      await sleep(100);
    }
  }).stop;
  return load;
}

const progress = (load: Load, more: number) => untilProgress(() => load.acknowledged.size, load.acknowledged.size + more, 60_000);

describeIfHaproxy('failover behind HAProxy: three servers, one PostgreSQL', () => {
  let cluster: PrivateCluster;
  let dir: string;
  let haproxy: ChildProcess | undefined;
  let haproxyOutput = '';
  const nodes: Node[] = [];
  let front: string;
  let token: string;
  let shares: string[];

  beforeAll(async () => {
    cluster = await startPrivateCluster();
    dir = mkdtempSync(join(tmpdir(), 'coffer-ha-'));
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) nodes.push(await startNode(port, cluster.url));
    ({ token, shares } = await initAndUnseal(nodes[0]!.url, 3, 2));
    for (const node of nodes.slice(1)) await unsealWith(node.url, shares.slice(0, 2));
    expect((await api(nodes[0]!.url, 'POST', '/v1/namespaces', { token, body: { name: NS } })).status).toBe(201);
    const frontPort = await freePort();
    front = `http://127.0.0.1:${frontPort}`;
    const cfg = join(dir, 'haproxy.cfg');
    // The shipped file itself (deploy/haproxy/haproxy.cfg): what operators run is what is measured here.
    writeFileSync(cfg, shippedHaproxyConfig(frontPort, await freePort(), [ports[0]!, ports[1]!, ports[2]!]));
    haproxy = spawn(HAPROXY, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout!.on('data', (d) => (haproxyOutput += d));
    haproxy.stderr!.on('data', (d) => (haproxyOutput += d));
    const deadline = Date.now() + 30_000;
    while (!(await ready(front))) {
      if (Date.now() > deadline || haproxy.exitCode !== null) throw new Error(`HAProxy did not come up:\n${haproxyOutput}`);
      await sleep(100);
    }
  }, 180_000);

  afterAll(async () => {
    if (haproxy && haproxy.exitCode === null) {
      haproxy.kill('SIGTERM');
      await new Promise((r) => haproxy!.once('exit', r));
    }
    for (const node of nodes) {
      if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGKILL');
      await node.exited;
    }
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('kill -9 of a server, then a PostgreSQL restart: no 500, no lost write, every server serves again', async () => {
    const load = startLoad(front, token);
    let killRecoveryMs = 0;
    let pgRecoveryMs = 0;
    try {
      await progress(load, 30);
      // A server dies mid-load; HAProxy's retries and health check take it out of rotation.
      const victim = nodes[1]!;
      const killedAt = Date.now();
      console.log(`ha-failover: kill -9 at ${new Date(killedAt).toISOString()}`);
      victim.child.kill('SIGKILL');
      await victim.exited;
      await progress(load, 30);
      // It comes back on its port (sealed), is unsealed, and HAProxy's check puts it back.
      nodes[1] = await startNode(victim.port, cluster.url);
      await unsealWith(nodes[1].url, shares.slice(1, 3));
      killRecoveryMs = await untilAllReady(nodes.map((n) => n.url), killedAt);
      await progress(load, 30);
      // The database restarts under every server at once.
      const restartedAt = Date.now();
      console.log(`ha-failover: PostgreSQL restart at ${new Date(restartedAt).toISOString()}`);
      await cluster.restartServer({ mode: 'fast' });
      pgRecoveryMs = await untilAllReady(nodes.map((n) => n.url), restartedAt);
      await progress(load, 30);
    } finally {
      await load.stop();
    }

    // Every acknowledged write is there, at its latest acknowledged version, on every server.
    const lost: string[] = [];
    const entries = [...load.acknowledged];
    for (let i = 0; i < entries.length; i += 8) {
      await Promise.all(
        entries.slice(i, i + 8).map(async ([path, want], j) => {
          const node = nodes[(i + j) % nodes.length]!;
          const r = await request(node.url, token, 'GET', `/v1/secrets/${NS}/${path}`);
          if (r.status !== 200 || (r.body?.version ?? 0) < want.version || (r.body?.version === want.version && r.body?.data?.value !== want.value)) {
            lost.push(`${path}: ${r.status} v${r.body?.version}`);
          }
        }),
      );
    }
    const ok = [...load.statuses].filter(([s]) => s >= 200 && s < 300).reduce((a, [, n]) => a + n, 0);
    const failed = load.total() - ok;
    const byStatus = [...load.statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ');
    console.log(
      `ha-failover: ${load.total()} requests through HAProxy (${byStatus}, of the 503s ${load.balancer503} from HAProxy, ${load.transportErrors} transport errors${load.transportErrors > 0 ? `: ${load.transportErrorNotes.join('; ')}` : ''}); ` +
        `${failed} failed, ${load.statuses.get(500) ?? 0} × 500; ${load.acknowledged.size} secrets acknowledged, ${lost.length} lost; ` +
        `${load.staleReads.length} stale reads; every server serving again ${killRecoveryMs} ms after the kill -9 (restart + unseal included) ` +
        `and ${pgRecoveryMs} ms after the PostgreSQL restart began`,
    );
    expect(load.statuses.get(500) ?? 0).toBe(0);
    expect(lost).toEqual([]);
    expect(load.staleReads).toEqual([]);
    // A read is never lost to a server's death: HAProxy sends it again elsewhere. A write in flight on
    // the killed server is not sent again (it may have been applied): its client sees the connection
    // close, at most one per worker, and must read back before writing again (README "Failover contract").
    expect(load.transportErrorNotes.filter((n) => !/ PUT /.test(n))).toEqual([]);
    expect(load.transportErrorNotes.length).toBeLessThanOrEqual(WORKERS);
    // Only "unavailable" kinds of failure: Coffer's 503 (database away) or HAProxy's 502/503 while no server was up.
    expect([...load.statuses.keys()].filter((s) => !(s >= 200 && s < 300) && ![502, 503, 504].includes(s))).toEqual([]);
  }, 300_000);
});
