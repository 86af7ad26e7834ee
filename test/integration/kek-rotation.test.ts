// KEK lifecycle: rotation (service primitive, API, schedule, usage limit), the resumable rewrap
// job, and crypto-shredding, through the real app on PGlite and PostgreSQL. Background jobs are
// off in these suites (kekRunJobs=false) so each test drives the job code itself, deterministically.
import { randomBytes } from 'node:crypto';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';
import type { RunningServer } from '@coffer/server/server';
import type { CofferError } from '@coffer/server/errors';
import { httpStatus } from '@coffer/server/http/status';

const DAY = 86_400_000;

interface Ctx {
  server: RunningServer;
  base: string;
  token: string;
}

function helpers(ctx: () => Ctx) {
  const auth = () => ({ token: ctx().token });
  return {
    auth,
    mkns: async (name: string, extra: Record<string, unknown> = {}) => {
      const res = await api(ctx().base, 'POST', '/v1/namespaces', { ...auth(), body: { name, ...extra } });
      if (res.status !== 201) throw new Error(`create ${name}: ${res.status} ${res.text}`);
      return res;
    },
    put: (ns: string, path: string, value: string, extra: Record<string, unknown> = {}) =>
      api(ctx().base, 'PUT', `/v1/secrets/${ns}/${path}`, { ...auth(), body: { data: { value }, ...extra } }),
    get: (ns: string, path: string, version?: number) =>
      api(ctx().base, 'GET', `/v1/secrets/${ns}/${path}${version ? `?version=${version}` : ''}`, auth()),
    kek: (ns: string) => api(ctx().base, 'GET', `/v1/namespaces/${ns}/kek`, auth()),
    rotate: (ns: string, body?: unknown) => api(ctx().base, 'POST', `/v1/namespaces/${ns}/kek/rotate`, { ...auth(), body }),
    /** path → kek_version of every stored, not destroyed, secret version. */
    kekVersionsOf: async (ns: string) => {
      const rows = await ctx()
        .server.core.db.selectFrom('secret_versions as v')
        .innerJoin('secrets as s', 's.id', 'v.secret_id')
        .innerJoin('namespaces as n', 'n.id', 's.namespace_id')
        .select(['s.path', 'v.version', 'v.kek_version'])
        .where('n.name', '=', ns)
        .where('v.wrapped_dek', 'is not', null)
        .orderBy('s.path')
        .orderBy('v.version')
        .execute();
      return rows.map((r) => `${r.path}@${r.version}:${r.kek_version}`);
    },
  };
}

describeEachStorage('KEK lifecycle', (kind) => {
  let store: TestStore;
  let ctx: Ctx;
  const h = helpers(() => ctx);

  beforeAll(async () => {
    store = await createStore(kind);
    const server = await startTestServer(store, { kekRunJobs: false, kekRewrapBatchSize: 3 });
    const { token } = await initAndUnseal(server.url);
    ctx = { server, base: server.url, token };
  });
  afterAll(async () => {
    await ctx?.server.stop();
    await store?.cleanup();
  });
  const kek = () => ctx.server.core.services().kek;

  describe('rotateKek (service primitive)', () => {
    it('adds a generated version that takes new writes at once; old DEKs still read', async () => {
      await h.mkns('svc-rot');
      expect((await h.put('svc-rot', 'a', 'one')).status).toBe(200);
      const rotated = await ctx.server.core.services().namespaces.rotateKek('svc-rot');
      expect(rotated).toMatchObject({ namespace: 'svc-rot', version: 2, origin: 'generated', deks_to_rewrap: 1 });
      expect((await h.put('svc-rot', 'b', 'two')).status).toBe(200);
      expect(await h.kekVersionsOf('svc-rot')).toEqual(['a@1:1', 'b@1:2']);
      expect((await h.get('svc-rot', 'a')).body.data).toEqual({ value: 'one' });
      expect((await h.get('svc-rot', 'b')).body.data).toEqual({ value: 'two' });
    });

    it('imports given material as an external version', async () => {
      const material = new Uint8Array(randomBytes(32));
      const rotated = await ctx.server.core.services().namespaces.rotateKek('svc-rot', { material });
      expect(rotated).toMatchObject({ version: 3, origin: 'external' });
      // The caller keeps its buffer (and zeroes it): rotateKek does not consume it.
      expect(material.some((b) => b !== 0)).toBe(true);
      expect((await h.put('svc-rot', 'c', 'three')).status).toBe(200);
      expect((await h.get('svc-rot', 'c')).body.data).toEqual({ value: 'three' });
      const status = (await h.kek('svc-rot')).body;
      expect(status.versions.map((v: any) => [v.version, v.origin, v.state])).toEqual([
        [1, 'generated', 'retiring'],
        [2, 'generated', 'retiring'],
        [3, 'external', 'active'],
      ]);
    });

    it('refuses bad material and unknown namespaces, changing nothing', async () => {
      const svc = ctx.server.core.services().namespaces;
      // Service errors carry a code; the HTTP edge's table gives the status a client sees.
      const statusOf = (p: Promise<unknown>) => p.then(() => 'resolved', (err: CofferError) => httpStatus(err));
      expect(await statusOf(svc.rotateKek('svc-rot', { material: new Uint8Array(16) }))).toBe(400);
      expect(await statusOf(svc.rotateKek('svc-rot', { origin: 'external' }))).toBe(400);
      expect(await statusOf(svc.rotateKek('svc-rot', { origin: 'generated', material: new Uint8Array(32) }))).toBe(400);
      expect(await statusOf(svc.rotateKek('no-such-ns'))).toBe(404);
      expect((await h.kek('svc-rot')).body.current_version).toBe(3);
    });
  });

  describe('manual rotation and the rewrap job', () => {
    const paths = Array.from({ length: 10 }, (_, i) => `app/s${String(i).padStart(2, '0')}`);

    it('POST kek/rotate: new version active at once, job running with progress', async () => {
      await h.mkns('rot');
      for (const p of paths) expect((await h.put('rot', p, `${p}-v1`)).status).toBe(200);
      // Second versions for some, a destroyed version and a deleted one: the job must handle all.
      for (const p of paths.slice(0, 4)) expect((await h.put('rot', p, `${p}-v2`)).status).toBe(200);
      expect((await api(ctx.base, 'POST', '/v1/secrets/rot/app/s00:destroy', { ...h.auth(), body: { versions: [1] } })).status).toBe(200);
      expect((await api(ctx.base, 'POST', '/v1/secrets/rot/app/s01:delete', { ...h.auth(), body: { versions: [2] } })).status).toBe(200);

      const res = await h.rotate('rot', {});
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ namespace: 'rot', version: 2, origin: 'generated', deks_to_rewrap: 13 });
      expect((await h.put('rot', 'fresh', 'new')).status).toBe(200);
      const status = (await h.kek('rot')).body;
      expect(status).toMatchObject({
        namespace: 'rot',
        current_version: 2,
        rotation_period: null,
        deletion_date: null,
        rewrap: { state: 'running', target_version: 2, total: 13, rewrapped: 0, remaining: 13, completed_at: null },
      });
      expect(status.versions.map((v: any) => [v.version, v.state])).toEqual([
        [1, 'retiring'],
        [2, 'active'],
      ]);
      expect(status.versions[1].encryptions).toBeGreaterThanOrEqual(1);
    });

    it('rewraps in batches, reads never fail meanwhile, then retires the old version', async () => {
      const before = await h.kekVersionsOf('rot');
      let reading = true;
      let reads = 0;
      const failures: string[] = [];
      const reader = (async () => {
        while (reading) {
          for (const p of paths.slice(2)) {
            const r = await h.get('rot', p);
            reads++;
            if (r.status !== 200 || r.body.data.value !== `${p}-v${paths.indexOf(p) < 4 ? 2 : 1}`) failures.push(`${p}: ${r.status} ${r.text}`);
          }
        }
      })();
      const outcomes: string[] = [];
      for (;;) {
        const outcome = await kek().rewrapBatch((await nsId('rot'))!);
        outcomes.push(outcome);
        const progress = (await h.kek('rot')).body.rewrap;
        if (outcome === 'more') expect(progress.state).toBe('running');
        if (outcome !== 'more') break;
      }
      reading = false;
      await reader;
      expect(failures).toEqual([]);
      expect(reads).toBeGreaterThan(0);
      // 11 secrets (10 + fresh) in batches of 3: four batches, the last completes the job.
      expect(outcomes).toEqual(['more', 'more', 'more', 'completed']);
      const after = await h.kekVersionsOf('rot');
      expect(after).toHaveLength(before.length);
      expect(after.every((r) => r.endsWith(':2'))).toBe(true);
      const status = (await h.kek('rot')).body;
      expect(status.rewrap).toMatchObject({ state: 'completed', total: 13, rewrapped: 13, remaining: 0 });
      expect(status.rewrap.completed_at).not.toBeNull();
      expect(status.versions.map((v: any) => [v.version, v.state])).toEqual([
        [1, 'retired'],
        [2, 'active'],
      ]);
      expect(status.versions[0].retired_at).not.toBeNull();
      // Rewraps count as encryptions under the new version.
      expect(status.versions[1].encryptions).toBeGreaterThanOrEqual(14);
      // Every version still reads, the destroyed one stays destroyed (its DEK was not resurrected).
      for (const p of paths) expect((await h.get('rot', p, 1)).status).toBe(p === 'app/s00' ? 404 : 200);
      expect((await h.get('rot', 'app/s03', 2)).body.data).toEqual({ value: 'app/s03-v2' });
      const destroyed = await ctx.server.core.db
        .selectFrom('secret_versions as v')
        .innerJoin('secrets as s', 's.id', 'v.secret_id')
        .select(['v.wrapped_dek', 'v.ciphertext', 'v.kek_version'])
        .where('s.path', '=', 'app/s00')
        .where('v.version', '=', 1)
        .where('s.namespace_id', '=', (await nsId('rot'))!)
        .executeTakeFirstOrThrow();
      expect(destroyed).toMatchObject({ wrapped_dek: null, ciphertext: null });
      // Once done, the job has nothing to do.
      expect(await kek().rewrapBatch((await nsId('rot'))!)).toBe('idle');
    });

    it('a rotation during a running job restarts it towards the newest version', async () => {
      expect((await h.rotate('rot')).body.version).toBe(3);
      const id = (await nsId('rot'))!;
      expect(await kek().rewrapBatch(id)).toBe('more');
      expect((await h.rotate('rot')).body.version).toBe(4);
      expect((await h.kek('rot')).body.rewrap).toMatchObject({ state: 'running', target_version: 4, rewrapped: 0 });
      await kek().runRewrapJobs();
      expect((await h.kekVersionsOf('rot')).every((r) => r.endsWith(':4'))).toBe(true);
      const states = (await h.kek('rot')).body.versions.map((v: any) => v.state);
      expect(states).toEqual(['retired', 'retired', 'retired', 'active']);
      for (const p of paths.slice(2)) expect((await h.get('rot', p)).status).toBe(200);
    });

    it('destroying one secret version still erases its DEK after rotations', async () => {
      expect((await api(ctx.base, 'POST', '/v1/secrets/rot/app/s05:destroy', { ...h.auth(), body: {} })).status).toBe(200);
      expect(await h.kekVersionsOf('rot')).not.toContain('app/s05@1:4');
      expectError(await h.get('rot', 'app/s05'), 404, 'not_found');
    });

    it('rejects bad rotate requests with 4xx and changes nothing', async () => {
      expectError(await h.rotate('rot', { material: 'AAAA' }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'POST', '/v1/namespaces/rot/kek/rotate?x=1', h.auth()), 400, 'invalid_request');
      expectError(await h.rotate('no-such-ns'), 404, 'not_found');
      expectError(await h.rotate('Bad_Name!'), 400, 'invalid_request');
      expectError(await api(ctx.base, 'POST', '/v1/namespaces/rot/kek/rotate'), 401);
      expectError(await api(ctx.base, 'GET', '/v1/namespaces/rot/kek'), 401);
      expectError(await api(ctx.base, 'PUT', '/v1/namespaces/rot/kek', h.auth()), 404);
      expect((await h.kek('rot')).body.current_version).toBe(4);
    });

    it('audits rotation under its own action', async () => {
      const res = await api(ctx.base, 'GET', '/v1/sys/audit?action=namespace.kek.rotate', h.auth());
      expect(res.status).toBe(200);
      const entries = res.body.entries ?? res.body.items ?? [];
      expect(entries.some((e: any) => e.action === 'namespace.kek.rotate' && e.namespace === 'rot')).toBe(true);
    });
  });

  describe('scheduled rotation', () => {
    it('creates and updates a rotation period; bad values are 400', async () => {
      const created = await h.mkns('sched', { rotation_period: 3600 });
      expect(created.body.rotation_period).toBe(3600);
      expectError(await api(ctx.base, 'POST', '/v1/namespaces', { ...h.auth(), body: { name: 'sched2', rotation_period: 10 } }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'POST', '/v1/namespaces', { ...h.auth(), body: { name: 'sched2', rotation_period: '3600' } }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'PATCH', '/v1/namespaces/sched', { ...h.auth(), body: {} }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'PATCH', '/v1/namespaces/sched', { ...h.auth(), body: { rotation_period: 1.5 } }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'PATCH', '/v1/namespaces/nope', { ...h.auth(), body: { rotation_period: 7200 } }), 404, 'not_found');
      expect((await api(ctx.base, 'GET', '/v1/namespaces/sched2', h.auth())).status).toBe(404);
      const updated = await api(ctx.base, 'PATCH', '/v1/namespaces/sched', { ...h.auth(), body: { rotation_period: 7200 } });
      expect(updated.status).toBe(200);
      expect(updated.body.rotation_period).toBe(7200);
      const status = (await h.kek('sched')).body;
      expect(Date.parse(status.next_rotation_at) - Date.parse(status.versions[0].created_at)).toBe(7200_000);
    });

    it('rotates when the period has passed, not before', async () => {
      expect((await h.put('sched', 'x', 'y')).status).toBe(200);
      const now = Date.now();
      expect(await kek().rotateDue(new Date(now + 3600_000))).toBe(0);
      expect((await h.kek('sched')).body.current_version).toBe(1);
      expect(await kek().rotateDue(new Date(now + 7300_000))).toBeGreaterThanOrEqual(1);
      expect((await h.kek('sched')).body.current_version).toBe(2);
      await kek().runOnce();
      expect((await h.kek('sched')).body.rewrap.state).toBe('completed');
      expect((await h.get('sched', 'x')).body.data).toEqual({ value: 'y' });
      // No request asked for these changes: the job records them itself.
      const audit = await api(ctx.base, 'GET', '/v1/sys/audit?namespace=sched', h.auth());
      const system = audit.body.entries.filter((e: any) => e.identity?.id === 'system:kek-lifecycle');
      expect(system.map((e: any) => [e.action, e.version])).toEqual(
        expect.arrayContaining([
          ['namespace.kek.rotate', 2],
          ['namespace.kek.retire', 2],
        ]),
      );
    });

    it('a null period turns the schedule off', async () => {
      expect((await api(ctx.base, 'PATCH', '/v1/namespaces/sched', { ...h.auth(), body: { rotation_period: null } })).body.rotation_period).toBeNull();
      await kek().rotateDue(new Date(Date.now() + 400 * DAY));
      expect((await h.kek('sched')).body.current_version).toBe(2);
    });
  });

  describe('crypto-shredding', () => {
    it('schedules with a 7–30 day window, disables the namespace, and can be cancelled', async () => {
      await h.mkns('shred');
      expect((await h.put('shred', 'db/password', 'hunter2')).status).toBe(200);
      expectError(await api(ctx.base, 'POST', '/v1/namespaces/shred/shred', { ...h.auth(), body: { pending_window_days: 6 } }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'POST', '/v1/namespaces/shred/shred', { ...h.auth(), body: { pending_window_days: 31 } }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'POST', '/v1/namespaces/shred/shred', { ...h.auth(), body: { pending_window_days: '7' } }), 400, 'invalid_request');
      expectError(await api(ctx.base, 'DELETE', '/v1/namespaces/shred/shred', h.auth()), 409, 'conflict');
      expectError(await api(ctx.base, 'POST', '/v1/namespaces/none/shred', { ...h.auth(), body: {} }), 404, 'not_found');
      expect((await h.get('shred', 'db/password')).status).toBe(200);

      const before = Date.now();
      const res = await api(ctx.base, 'POST', '/v1/namespaces/shred/shred', { ...h.auth(), body: {} });
      expect(res.status).toBe(202);
      const due = Date.parse(res.body.deletion_date);
      expect(due - before).toBeGreaterThanOrEqual(30 * DAY - 1000);
      expect(due - before).toBeLessThanOrEqual(30 * DAY + 5000);
      expectError(await api(ctx.base, 'POST', '/v1/namespaces/shred/shred', { ...h.auth(), body: {} }), 409, 'conflict');

      // Disabled: every data operation is a clear 409, the read cache included.
      expectError(await h.get('shred', 'db/password'), 409, 'namespace_disabled');
      expectError(await h.get('shred', 'db/password', 1), 409, 'namespace_disabled');
      expectError(await h.get('shred', 'nothing-here'), 409, 'namespace_disabled');
      expectError(await h.put('shred', 'db/password', 'x'), 409, 'namespace_disabled');
      expectError(await h.put('shred', 'new', 'x'), 409, 'namespace_disabled');
      expectError(await api(ctx.base, 'GET', '/v1/secrets/shred/', h.auth()), 409, 'namespace_disabled');
      expectError(await api(ctx.base, 'GET', '/v1/bulk/shred/', h.auth()), 409, 'namespace_disabled');
      expectError(await api(ctx.base, 'GET', '/v1/secrets/shred/db/password:versions', h.auth()), 409, 'namespace_disabled');
      expectError(await api(ctx.base, 'POST', '/v1/secrets/shred/db/password:destroy', { ...h.auth(), body: {} }), 409, 'namespace_disabled');
      expectError(await h.rotate('shred'), 409, 'namespace_disabled');
      // Its state stays visible.
      const detail = await api(ctx.base, 'GET', '/v1/namespaces/shred', h.auth());
      expect(detail.status).toBe(200);
      expect(detail.body.deletion_date).toBe(res.body.deletion_date);
      expect((await h.kek('shred')).body.deletion_date).toBe(res.body.deletion_date);

      const cancelled = await api(ctx.base, 'DELETE', '/v1/namespaces/shred/shred', h.auth());
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toEqual({ namespace: 'shred', deletion_requested_at: null, deletion_date: null });
      expect((await h.get('shred', 'db/password')).body.data).toEqual({ value: 'hunter2' });
    });

    it('pauses a running rewrap while the namespace waits for shredding; cancelling resumes it', async () => {
      await h.mkns('paused');
      for (let i = 0; i < 5; i++) expect((await h.put('paused', `k${i}`, `v${i}`)).status).toBe(200);
      expect((await h.rotate('paused')).status).toBe(200);
      const id = (await nsId('paused'))!;
      expect(await kek().rewrapBatch(id)).toBe('more');
      expect((await api(ctx.base, 'POST', '/v1/namespaces/paused/shred', { ...h.auth(), body: { pending_window_days: 7 } })).status).toBe(202);
      const before = (await h.kek('paused')).body.rewrap;
      expect(await kek().rewrapBatch(id)).toBe('idle');
      expect((await h.kek('paused')).body.rewrap).toEqual(before);
      expect((await api(ctx.base, 'DELETE', '/v1/namespaces/paused/shred', h.auth())).status).toBe(200);
      await kek().runRewrapJobs();
      expect((await h.kek('paused')).body.rewrap).toMatchObject({ state: 'completed', rewrapped: 5, remaining: 0 });
      for (let i = 0; i < 5; i++) expect((await h.get('paused', `k${i}`)).body.data).toEqual({ value: `v${i}` });
    });

    it('destroys keys and purges secrets only once the window has passed', async () => {
      const id = (await nsId('shred'))!;
      const res = await api(ctx.base, 'POST', '/v1/namespaces/shred/shred', { ...h.auth(), body: { pending_window_days: 7 } });
      expect(res.status).toBe(202);
      const due = Date.parse(res.body.deletion_date);
      expect(await kek().sweepShredding(new Date(due - 1000))).toEqual([]);
      expect((await api(ctx.base, 'GET', '/v1/namespaces/shred', h.auth())).status).toBe(200);

      expect(await kek().sweepShredding(new Date(due + 1000))).toEqual(['shred']);
      expectError(await api(ctx.base, 'GET', '/v1/namespaces/shred', h.auth()), 404, 'not_found');
      expectError(await h.get('shred', 'db/password'), 404, 'not_found');
      const db = ctx.server.core.db;
      expect(await db.selectFrom('namespace_keys').select('version').where('namespace_id', '=', id).execute()).toEqual([]);
      expect(await db.selectFrom('secrets').select('id').where('namespace_id', '=', id).execute()).toEqual([]);
      // The name can be used again, with new keys.
      await h.mkns('shred');
      expectError(await h.get('shred', 'db/password'), 404, 'not_found');
    });

    it('audits schedule, cancel and the destruction', async () => {
      const res = await api(ctx.base, 'GET', '/v1/sys/audit?namespace=shred', h.auth());
      const actions = new Set((res.body.entries ?? []).map((e: any) => e.action));
      expect(actions.has('namespace.shred.schedule')).toBe(true);
      expect(actions.has('namespace.shred.cancel')).toBe(true);
      const destroyed = res.body.entries.filter((e: any) => e.action === 'namespace.shred.destroy');
      expect(destroyed).toHaveLength(1);
      expect(destroyed[0].identity).toMatchObject({ id: 'system:kek-lifecycle', method: 'none' });
    });
  });

  async function nsId(name: string): Promise<string | undefined> {
    return (await ctx.server.core.db.selectFrom('namespaces').select('id').where('name', '=', name).executeTakeFirst())?.id;
  }
});

describeEachStorage('KEK usage limit', (kind) => {
  let store: TestStore;
  let ctx: Ctx;
  const h = helpers(() => ctx);

  beforeAll(async () => {
    store = await createStore(kind);
    const server = await startTestServer(store, { kekRunJobs: false, kekRotateAfterEncryptions: 10, kekUsageReserveBlock: 1 });
    const { token } = await initAndUnseal(server.url);
    ctx = { server, base: server.url, token };
  });
  afterAll(async () => {
    await ctx?.server.stop();
    await store?.cleanup();
  });

  it('counts every wrap and rotates once the threshold is reached', async () => {
    await h.mkns('worn');
    for (let i = 0; i < 9; i++) expect((await h.put('worn', 'k', `v${i}`, { max_versions: 1 })).status).toBe(200);
    let status = (await h.kek('worn')).body;
    expect(status.usage_limit).toBe(10);
    expect(status.versions[0].encryptions).toBe(9);
    expect(await ctx.server.core.services().kek.rotateDue()).toBe(0);
    expect((await h.put('worn', 'k', 'v9', { max_versions: 1 })).status).toBe(200);
    await ctx.server.core.services().kek.runOnce();
    status = (await h.kek('worn')).body;
    expect(status.current_version).toBe(2);
    expect(status.versions.map((v: any) => [v.version, v.state, v.encryptions])).toEqual([
      [1, 'retired', 10],
      [2, 'active', 1],
    ]);
    expect((await h.get('worn', 'k')).body.data).toEqual({ value: 'v9' });
  });
});

describeEachStorage('KEK background runner', (kind) => {
  let store: TestStore;
  let ctx: Ctx;
  const h = helpers(() => ctx);

  beforeAll(async () => {
    store = await createStore(kind);
    const server = await startTestServer(store, { kekRewrapBatchSize: 2, kekUsageReserveBlock: 2 });
    const { token } = await initAndUnseal(server.url);
    ctx = { server, base: server.url, token };
  });
  afterAll(async () => {
    await ctx?.server.stop();
    await store?.cleanup();
  });

  it('finishes a rewrap by itself after a manual rotation; counts usage in reserved blocks', async () => {
    await h.mkns('auto');
    for (let i = 0; i < 7; i++) expect((await h.put('auto', `s${i}`, `v${i}`)).status).toBe(200);
    // Blocks of 2: 7 writes reserved 4 blocks. The stored count is never below the true one.
    expect((await h.kek('auto')).body.versions[0].encryptions).toBe(8);
    expect((await h.rotate('auto')).status).toBe(200);
    const deadline = Date.now() + 20_000;
    while ((await h.kek('auto')).body.rewrap.state !== 'completed') {
      if (Date.now() > deadline) throw new Error('rewrap did not complete');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await h.kekVersionsOf('auto')).every((r) => r.endsWith(':2'))).toBe(true);
    for (let i = 0; i < 7; i++) expect((await h.get('auto', `s${i}`)).body.data).toEqual({ value: `v${i}` });
  });

  it('writes and reads keep working while the job rewraps under them', async () => {
    await h.mkns('busy');
    const N = 30;
    for (let i = 0; i < N; i++) expect((await h.put('busy', `p${i}`, `a${i}`, { max_versions: 2 })).status).toBe(200);
    expect((await h.rotate('busy')).status).toBe(200);
    const problems: string[] = [];
    const latest = new Map<number, string>();
    for (let i = 0; i < N; i++) latest.set(i, `a${i}`);
    const writer = (async () => {
      // Overwrites (with retention deletes of versions under the old KEK) while batches run.
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < N; i += 3) {
          const value = `b${i}-${round}`;
          const w = await h.put('busy', `p${i}`, value, { max_versions: 2 });
          if (w.status !== 200) problems.push(`write p${i}: ${w.status} ${w.text}`);
          else latest.set(i, value);
        }
      }
    })();
    const reader = (async () => {
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < N; i++) {
          const r = await h.get('busy', `p${i}`);
          if (r.status !== 200) problems.push(`read p${i}: ${r.status} ${r.text}`);
        }
      }
    })();
    await Promise.all([writer, reader]);
    const deadline = Date.now() + 20_000;
    while ((await h.kek('busy')).body.rewrap.state !== 'completed') {
      if (Date.now() > deadline) throw new Error('rewrap did not complete');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(problems).toEqual([]);
    expect((await h.kekVersionsOf('busy')).every((r) => r.endsWith(':2'))).toBe(true);
    for (let i = 0; i < N; i++) expect((await h.get('busy', `p${i}`)).body.data).toEqual({ value: latest.get(i) });
  });
});

describeEachStorage('KEK usage limit with the background runner', (kind) => {
  let store: TestStore;
  let ctx: Ctx;
  const h = helpers(() => ctx);

  beforeAll(async () => {
    store = await createStore(kind);
    const server = await startTestServer(store, { kekRotateAfterEncryptions: 10, kekUsageReserveBlock: 1 });
    const { token } = await initAndUnseal(server.url);
    ctx = { server, base: server.url, token };
  });
  afterAll(async () => {
    await ctx?.server.stop();
    await store?.cleanup();
  });

  it('the write that reaches the limit makes the server rotate by itself, and the rewrap follows', async () => {
    await h.mkns('limit');
    for (let i = 0; i < 10; i++) expect((await h.put('limit', 'k', `v${i}`, { max_versions: 1 })).status).toBe(200);
    const deadline = Date.now() + 20_000;
    let status = (await h.kek('limit')).body;
    while (status.current_version !== 2 || status.rewrap?.state !== 'completed') {
      if (Date.now() > deadline) throw new Error(`no automatic rotation: ${JSON.stringify(status)}`);
      await new Promise((r) => setTimeout(r, 50));
      status = (await h.kek('limit')).body;
    }
    expect(status.versions.map((v: any) => [v.version, v.state])).toEqual([
      [1, 'retired'],
      [2, 'active'],
    ]);
    expect((await h.get('limit', 'k')).body.data).toEqual({ value: 'v9' });
  });
});
