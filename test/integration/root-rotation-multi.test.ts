// Root rotation with several servers on one PostgreSQL: the others follow the new root (change
// feed, or a KEK row under a newer root version), and nothing can be stored under a root
// version that is no longer in effect.
import type { RunningServer } from '@coffer/server/server';
import { describeIfPostgres, describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, initAndUnseal, startTestServer, unsealWith, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

async function until(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

function suite(name: string, seal: () => Record<string, unknown>, shamir: boolean) {
  describe(name, () => {
    let store: TestStore;
    let a: RunningServer;
    let b: RunningServer;
    let t: string;
    let shares: string[] = [];
    beforeAll(async () => {
      store = await createStore('postgres');
      a = await startTestServer(store, seal());
      if (shamir) ({ token: t, shares } = await initAndUnseal(a.url, 3, 2));
      else t = (await api(a.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } })).body.root_token;
      b = await startTestServer(store, seal());
      if (shamir) await unsealWith(b.url, shares.slice(0, 2));
      expect((await api(b.url, 'GET', '/v1/sys/seal-status')).body.sealed).toBe(false);
    });
    afterAll(async () => {
      await a?.stop();
      await b?.stop();
      await store?.cleanup();
    });

    const rotate = async (on: RunningServer) => {
      const first = await api(on.url, 'POST', '/v1/sys/rotate-root', { token: t, body: shamir ? { shares: shares.slice(0, 2) } : {} });
      expect(first.status).toBe(200);
      if (!shamir) return first.body.root_version as number;
      const done = await api(on.url, 'POST', '/v1/sys/rotate-root/verify', { token: t, body: { shares: first.body.shares.slice(0, 2) } });
      expect(done.status).toBe(200);
      shares = first.body.shares;
      return done.body.root_version as number;
    };

    it('the other server follows each rotation; both read and write under the new root', async () => {
      await api(a.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'x' } });
      await api(a.url, 'PUT', '/v1/secrets/x/s', { token: t, body: { data: { v: 'x' } } });
      for (let round = 0; round < 2; round++) {
        const version = await rotate(a);
        await until(async () => (await api(b.url, 'GET', '/v1/sys/seal-status')).body.root_version === version);
        expect((await api(b.url, 'GET', '/v1/sys/seal-status')).body.sealed).toBe(false);
        // B had never loaded x's KEK: it unwraps it under the new root.
        expect((await api(b.url, 'GET', '/v1/secrets/x/s', { token: t })).body.data).toEqual({ v: 'x' });
        const ns = `b${round}`;
        expect((await api(b.url, 'POST', '/v1/namespaces', { token: t, body: { name: ns } })).status).toBe(201);
        await api(b.url, 'PUT', `/v1/secrets/${ns}/s`, { token: t, body: { data: { v: ns } } });
        expect((await api(a.url, 'GET', `/v1/secrets/${ns}/s`, { token: t })).body.data).toEqual({ v: ns });
      }
    });

    it('refuses to store a key under a root version that is not in effect', async () => {
      const version = (await api(a.url, 'GET', '/v1/sys/seal-status')).body.root_version as number;
      const ns = await a.core.db.selectFrom('namespaces').select('id').where('name', '=', 'x').executeTakeFirstOrThrow();
      const stale = a.core.db
        .insertInto('namespace_keys')
        .values({ namespace_id: ns.id, version: 99, wrapped_key: new Uint8Array(40), root_version: version - 1, origin: 'generated', state: 'retired' })
        .execute();
      await expect(stale).rejects.toMatchObject({ code: '23503' });
    });
  });
}

describeIfPostgres('root rotation across servers sharing PostgreSQL', () => {
  suite('Shamir seal', () => ({}), true);
  describeIfSoftHsm('PKCS#11 seal', () => {
    let hsm: SoftHsm;
    beforeAll(() => {
      hsm = createSoftHsm(['multi']);
    });
    afterAll(() => hsm?.cleanup());
    suite('SoftHSM2', () => hsm.config('multi'), false);
  });
});
