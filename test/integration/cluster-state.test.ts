// State that used to be per process, shared by two servers on one PostgreSQL: an init on one
// server is seen by the other without a restart; login failures count against one budget
// whichever server they hit (and an unlock on either lifts them); a reader who presents the
// version it wrote never gets an older one from the other server's read cache; health says
// which server answered and which background jobs it runs.
import http from 'node:http';
import type { RunningServer } from '@coffer/server/server';
import { describeIfPostgres } from '../helpers/env.js';
import { api, createStore, eventually, startTestServer, unsealWith, type TestStore } from '../helpers/server.js';

describeIfPostgres('cluster-wide state on one PostgreSQL', () => {
  let store: TestStore;
  let a: RunningServer;
  let b: RunningServer;
  let token: string;
  const asRoot = (body?: unknown) => ({ token, ...(body === undefined ? {} : { body }) });
  const guard = { loginRatePerSecond: 0, loginMaxFailures: 3, loginMaxFailuresTotal: 7, loginLockoutSeconds: 600, loginLockoutMaxSeconds: 600 };

  /** A userpass login whose TCP connection comes from `address` (any 127.0.0.0/8 address is this host). */
  function loginFrom(server: RunningServer, address: string, username: string, password: string): Promise<number> {
    const url = new URL(server.url);
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, method: 'POST', path: '/v1/auth/userpass/login', localAddress: address, agent: false, headers: { 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ username, password }));
    });
  }

  beforeAll(async () => {
    store = await createStore('postgres');
    // Both start before anything is initialised.
    a = await startTestServer(store, guard);
    b = await startTestServer(store, guard);
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await store?.cleanup();
  });

  it('an init on one server shows on the other without a restart', async () => {
    expect((await api(b.url, 'GET', '/v1/sys/health')).status).toBe(501);
    // A third server misses the notification (its listeners are gone): its status endpoints look at the database.
    const c = await startTestServer(store, guard);
    c.storage.changes.events.removeAllListeners('change');
    expect((await api(c.url, 'GET', '/v1/sys/health')).status).toBe(501);
    const init = await api(a.url, 'POST', '/v1/sys/init', { body: { shares: 3, threshold: 2 } });
    expect(init.status).toBe(200);
    token = init.body.root_token;
    try {
      const fromDb = await eventually(() => api(c.url, 'GET', '/v1/sys/health'), (r) => r.status === 503, 10_000);
      expect(fromDb.body).toMatchObject({ initialized: true, sealed: true });
      expect((await api(c.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ initialized: true, sealed: true, threshold: 2 });
    } finally {
      await c.stop();
    }
    // The change feed tells b (no request to b needed).
    const seen = await eventually(async () => b.core.status().initialized, (v) => v, 10_000);
    expect(seen).toBe(true);
    const health = await api(b.url, 'GET', '/v1/sys/health');
    expect(health.status).toBe(503); // initialised and sealed, no longer 501
    expect(health.body).toMatchObject({ initialized: true, sealed: true, jobs: [] });
    await unsealWith(a.url, init.body.shares.slice(0, 2));
    await unsealWith(b.url, init.body.shares.slice(1, 3));
    expect((await api(b.url, 'GET', '/v1/sys/health')).status).toBe(200);
  });

  it('login failures on either server count against one budget, and an unlock on either lifts it', async () => {
    expect((await api(a.url, 'PUT', '/v1/auth/userpass/users/carol', asRoot({ password: 'carol-password-1' }))).status).toBe(201);
    // Three failures from one address, spread over two servers: locked on both.
    expect(await loginFrom(a, '127.0.0.2', 'carol', 'wrong-1')).toBe(401);
    expect(await loginFrom(b, '127.0.0.2', 'carol', 'wrong-2')).toBe(401);
    expect(await loginFrom(a, '127.0.0.2', 'carol', 'wrong-3')).toBe(401);
    expect(await loginFrom(b, '127.0.0.2', 'carol', 'carol-password-1')).toBe(429);
    expect(await loginFrom(a, '127.0.0.2', 'carol', 'carol-password-1')).toBe(429);
    // Elsewhere she still logs in (which resets the name's total, not the guesser's address).
    expect(await loginFrom(b, '127.0.0.3', 'carol', 'carol-password-1')).toBe(200);
    expect(await loginFrom(a, '127.0.0.2', 'carol', 'carol-password-1')).toBe(429);
    // The ceiling across addresses (7), reached through both servers, locks the name everywhere.
    for (let i = 0; i < 7; i++) expect(await loginFrom(i % 2 ? a : b, `127.0.1.${i + 1}`, 'carol', `wrong-${i}`)).toBe(401);
    expect(await loginFrom(a, '127.0.0.9', 'carol', 'carol-password-1')).toBe(429);
    expect(await loginFrom(b, '127.0.0.9', 'carol', 'carol-password-1')).toBe(429);
    // An unlock on b lifts it on a too.
    const unlock = await api(b.url, 'POST', '/v1/auth/userpass/users/carol/unlock', asRoot());
    expect(unlock.body).toEqual({ unlocked: true });
    expect(await loginFrom(a, '127.0.0.9', 'carol', 'carol-password-1')).toBe(200);
    expect(await loginFrom(a, '127.0.0.2', 'carol', 'carol-password-1')).toBe(200);
  });

  it('a reader who presents the version it wrote never gets an older one from the other server\'s cache', async () => {
    expect((await api(a.url, 'POST', '/v1/namespaces', asRoot({ name: 'ryw' }))).status).toBe(201);
    const put = (value: string) => api(a.url, 'PUT', '/v1/secrets/ryw/k', asRoot({ data: { value } }));
    const readB = (query = '') => api(b.url, 'GET', `/v1/secrets/ryw/k${query}`, asRoot());
    expect((await put('one')).body.version).toBe(1);
    expect((await readB()).body.version).toBe(1); // cached on b now
    // Hold back b's notifications: the window between a's commit and b hearing of it, made long.
    const feed = b.storage.changes.events;
    const held = feed.listeners('change') as Array<(payload: string) => void>;
    feed.removeAllListeners('change');
    const pending: string[] = [];
    feed.on('change', (payload: string) => pending.push(payload));
    try {
      const written = await put('two');
      expect(written.body.version).toBe(2);
      // Without the version, b may answer from its cache (it does here: that is the window).
      expect((await readB()).body.version).toBe(1);
      const fresh = await readB(`?min_version=${written.body.version}`);
      expect(fresh.status).toBe(200);
      expect(fresh.body).toMatchObject({ version: 2, data: { value: 'two' } });
      // A version the reader has not seen (older) is served as before; nonsense is a 400.
      expect((await readB('?min_version=1')).body.version).toBeGreaterThanOrEqual(1);
      expect((await readB('?min_version=zero')).status).toBe(400);
    } finally {
      feed.removeAllListeners('change');
      for (const listener of held) feed.on('change', listener);
      for (const payload of pending) feed.emit('change', payload);
    }
    const caught = await eventually(() => readB(), (r) => r.body?.version === 2);
    expect(caught.body.version).toBe(2);
  });

  it('health, readiness and metrics say which server answered and which jobs it runs', async () => {
    const [ha, hb] = await Promise.all([api(a.url, 'GET', '/v1/sys/health'), api(b.url, 'GET', '/v1/sys/health')]);
    expect(ha.body.node).toBe(a.core.node);
    expect(hb.body.node).toBe(b.core.node);
    expect(ha.body.node).not.toBe(hb.body.node);
    const names = (ha.body.jobs as Array<{ name: string }>).map((j) => j.name).sort();
    expect(names.length).toBeGreaterThan(0);
    expect((hb.body.jobs as Array<{ name: string }>).map((j) => j.name).sort()).toEqual(names);
    // Every job has run somewhere; where it ran, the other server found the lock taken or ran it at another time.
    const settled = await eventually(
      async () => [(await api(a.url, 'GET', '/v1/sys/ready')).body, (await api(b.url, 'GET', '/v1/sys/ready')).body],
      (both) => names.every((n) => both.some((r) => r.jobs.some((j: { name: string; last: string | null }) => j.name === n && (j.last === 'ok' || j.last === 'failed')))),
      15_000,
    );
    for (const r of settled) {
      expect(r.ready).toBe(true);
      for (const j of r.jobs) expect([null, 'ok', 'failed', 'busy']).toContain(j.last);
    }
    const metrics = await api(a.url, 'GET', '/v1/sys/metrics', asRoot());
    expect(metrics.text).toContain(`coffer_node_info{node="${a.core.node}"} 1`);
    expect(metrics.text).toMatch(/coffer_job_ran_here\{job="[^"]+"\} [01]/);
  });
});
