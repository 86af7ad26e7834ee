// Who may do what with a named key, over HTTP, for every KMS route: the right capability on the
// key is allowed; every other capability (KMS and secret ones together), the right one under a
// deny, the right one on another key's name, and no token at all are refused — before the key is
// looked up, so a refusal says nothing of whether the key exists. A build job holding `encrypt`
// cannot decrypt. Storage plays no part: PGlite only.
import { KMS_CAPABILITIES, SECRET_CAPABILITIES, type Capability } from '@coffer/sdk/api';
import { ROUTES } from '@coffer/server/http/route-table';
import { describeRequest, routeTemplate } from '@coffer/server/http/route-template';
import type { RunningServer } from '@coffer/server/server';
import { escrowKeyPair } from '../helpers/byok.js';
import { api, createStore, initAndUnseal, startTestServer, tokenWithRules, type TestStore } from '../helpers/server.js';

const NS = 'km';
const b64 = (s: string) => Buffer.from(s).toString('base64');
type Rule = { namespace: string; path: string; capabilities: Capability[]; effect?: 'allow' | 'deny' };

interface Endpoint {
  method: string;
  path: string;
  body?: () => unknown;
  /** The capability needed on the key (path), 'any-kms' (any KMS capability) or 'token' (any valid token). */
  needs: Capability | 'any-kms' | 'token';
  /** The key the capability is checked on ('' for the namespace as a whole). */
  key: string;
  ok: number;
}

describe('KMS authorization matrix', () => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  const state: Record<string, string> = {};
  const asRoot = (body?: unknown) => ({ token: root, ...(body === undefined ? {} : { body }) });

  const endpoints: Endpoint[] = [
    { method: 'GET', path: '/v1/kms/random', needs: 'token', key: '', ok: 200 },
    { method: 'GET', path: `/v1/kms/${NS}/keys`, needs: 'any-kms', key: '', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/keys/made`, body: () => ({ type: 'hmac-sha256' }), needs: 'key-admin', key: 'made', ok: 201 },
    { method: 'GET', path: `/v1/kms/${NS}/keys/k-aes`, needs: 'any-kms', key: 'k-aes', ok: 200 },
    { method: 'DELETE', path: `/v1/kms/${NS}/keys/k-del`, needs: 'key-admin', key: 'k-del', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/keys/k-aes/config`, body: () => ({ auto_rotate_period: 0 }), needs: 'key-admin', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/keys/k-aes/rotate`, body: () => ({}), needs: 'key-admin', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/keys/k-aes/trim`, body: () => ({ min_available_version: 1 }), needs: 'key-admin', key: 'k-aes', ok: 200 },
    { method: 'GET', path: `/v1/kms/${NS}/keys/k-aes/import-params`, needs: 'key-admin', key: 'k-aes', ok: 200 },
    // Past authorisation, a made-up import token is the caller's 400 (a real import: kms-byok.test.ts).
    { method: 'POST', path: `/v1/kms/${NS}/keys/k-imp/import`, body: () => ({ type: 'aes256-gcm', import_token: 'not-a-token', encrypted_key_material: 'AAAA' }), needs: 'key-admin', key: 'k-imp', ok: 400 },
    { method: 'POST', path: `/v1/kms/${NS}/keys/k-aes/import-version`, body: () => ({ import_token: 'not-a-token', encrypted_key_material: 'AAAA' }), needs: 'key-admin', key: 'k-aes', ok: 400 },
    { method: 'POST', path: `/v1/kms/${NS}/keys/k-exp/export`, body: () => ({ public_key: state.exportKey }), needs: 'key-admin', key: 'k-exp', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/keys/k-exp/export-requests`, body: () => ({ public_key: state.exportKey }), needs: 'key-admin', key: 'k-exp', ok: 201 },
    { method: 'GET', path: `/v1/kms/${NS}/public-key/k-ed`, needs: 'verify', key: 'k-ed', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/encrypt/k-aes`, body: () => ({ plaintext: b64('p') }), needs: 'encrypt', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/decrypt/k-aes`, body: () => ({ ciphertext: state.ciphertext }), needs: 'decrypt', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/rewrap/k-aes`, body: () => ({ ciphertext: state.ciphertext }), needs: 'rewrap', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/datakey/plaintext/k-aes`, body: () => ({}), needs: 'datakey', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/datakey/wrapped/k-aes`, body: () => ({ bits: 128 }), needs: 'datakey', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/sign/k-ed`, body: () => ({ input: b64('m') }), needs: 'sign', key: 'k-ed', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/verify/k-ed`, body: () => ({ input: b64('m'), signature: state.signature }), needs: 'verify', key: 'k-ed', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/verify/k-mac`, body: () => ({ input: b64('m'), hmac: state.hmac }), needs: 'verify', key: 'k-mac', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/hmac/k-mac`, body: () => ({ input: b64('m') }), needs: 'hmac', key: 'k-mac', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/batch/encrypt/k-aes`, body: () => ({ items: [{ plaintext: b64('p') }] }), needs: 'encrypt', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/batch/decrypt/k-aes`, body: () => ({ items: [{ ciphertext: state.ciphertext }] }), needs: 'decrypt', key: 'k-aes', ok: 200 },
    { method: 'POST', path: `/v1/kms/${NS}/batch/rewrap/k-aes`, body: () => ({ items: [{ ciphertext: state.ciphertext }] }), needs: 'rewrap', key: 'k-aes', ok: 200 },
  ];

  beforeAll(async () => {
    store = await createStore('pglite');
    server = await startTestServer(store, { kekRunJobs: false });
    base = server.url;
    ({ token: root } = await initAndUnseal(base, 1, 1));
    expect((await api(base, 'POST', '/v1/namespaces', asRoot({ name: NS }))).status).toBe(201);
    for (const [name, type, extra] of [['k-aes', 'aes256-gcm', {}], ['k-ed', 'ed25519', {}], ['k-mac', 'hmac-sha256', {}], ['k-del', 'aes256-gcm', { deletion_allowed: true }], ['k-exp', 'aes256-gcm', { exportable: true }]] as const) {
      expect((await api(base, 'POST', `/v1/kms/${NS}/keys/${name}`, asRoot({ type, ...extra }))).status).toBe(201);
    }
    state.ciphertext = (await api(base, 'POST', `/v1/kms/${NS}/encrypt/k-aes`, asRoot({ plaintext: b64('secret') }))).body.ciphertext;
    state.signature = (await api(base, 'POST', `/v1/kms/${NS}/sign/k-ed`, asRoot({ input: b64('m') }))).body.signature;
    state.hmac = (await api(base, 'POST', `/v1/kms/${NS}/hmac/k-mac`, asRoot({ input: b64('m') }))).body.hmac;
    state.exportKey = escrowKeyPair(2048).publicPem;
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  // A policy needs a rule: "no rights" is a rule elsewhere.
  const tokenWith = async (rules: Rule[]): Promise<string> =>
    (await tokenWithRules(base, root, rules.length > 0 ? rules : [{ namespace: 'elsewhere', path: '*', capabilities: ['read'] }])).client_token;

  it('covers every KMS route', () => {
    const covered = new Set(endpoints.map((e) => `${e.method} ${routeTemplate(e.path)}`));
    const kms = ROUTES.filter((r) => r.template.startsWith('/v1/kms')).map((r) => `${r.method} ${r.template}`);
    expect(kms.length).toBeGreaterThanOrEqual(20);
    expect(kms.filter((r) => !covered.has(r))).toEqual([]);
    // A request no handler reached (401, 404) is still audited under its namespace and key.
    expect(describeRequest('POST', '/v1/kms/km/encrypt/k-aes')).toEqual({ action: 'kms.encrypt', namespace: 'km', path: 'k-aes' });
    expect(describeRequest('GET', '/v1/kms/km/keys')).toEqual({ action: 'kms.key.list', namespace: 'km', path: null });
  });

  it('allows the right capability on the key and refuses everything short of it', async () => {
    const ALL: readonly Capability[] = [...SECRET_CAPABILITIES, ...KMS_CAPABILITIES];
    const bypasses: string[] = [];
    for (const e of endpoints) {
      const call = (token?: string) => api(base, e.method, e.path, { ...(token ? { token } : {}), ...(e.body ? { body: e.body() } : {}) });
      const glob = e.key === '' ? '*' : e.key;
      const right: Capability[] = e.needs === 'token' ? [] : e.needs === 'any-kms' ? ['verify'] : [e.needs];
      const refusals: Array<[string, Rule[] | null]> = [['no token', null]];
      if (e.needs !== 'token') {
        const others = ALL.filter((c) => (e.needs === 'any-kms' ? !(KMS_CAPABILITIES as readonly string[]).includes(c) : c !== e.needs));
        refusals.push(
          ['every other capability', [{ namespace: NS, path: '*', capabilities: others }]],
          ['the capability under a deny', [{ namespace: NS, path: '*', capabilities: right }, { namespace: NS, path: glob, capabilities: right, effect: 'deny' }]],
          ['the capability in another namespace', [{ namespace: 'km-other', path: '*', capabilities: right }]],
        );
        if (e.key !== '') refusals.push(['the capability on other keys', [{ namespace: NS, path: 'other-*', capabilities: right }]]);
        else refusals.push(['the capability on some keys only', [{ namespace: NS, path: 'k-*', capabilities: right }]]);
      }
      for (const [what, rules] of refusals) {
        const res = await call(rules === null ? undefined : await tokenWith(rules));
        const expected = rules === null ? 401 : 403;
        if (res.status !== expected) bypasses.push(`${e.method} ${e.path} with ${what}: ${res.status} ${res.text.slice(0, 120)}`);
      }
      const res = await call(await tokenWith(right.length > 0 ? [{ namespace: NS, path: glob, capabilities: right }] : []));
      if (res.status !== e.ok) bypasses.push(`${e.method} ${e.path} with the right capability: ${res.status} ${res.text.slice(0, 200)}`);
    }
    expect(bypasses).toEqual([]);
  }, 180_000);

  it('a build job holding encrypt encrypts but cannot decrypt, rewrap, issue data keys or see other keys', async () => {
    const job = await tokenWith([{ namespace: NS, path: 'k-aes', capabilities: ['encrypt'] }]);
    const as = (method: string, path: string, body?: unknown) => api(base, method, path, { token: job, ...(body === undefined ? {} : { body }) });
    const sealed = await as('POST', `/v1/kms/${NS}/encrypt/k-aes`, { plaintext: b64('artifact key') });
    expect(sealed.status).toBe(200);
    for (const path of ['decrypt', 'rewrap']) expect((await as('POST', `/v1/kms/${NS}/${path}/k-aes`, { ciphertext: sealed.body.ciphertext })).status).toBe(403);
    expect((await as('POST', `/v1/kms/${NS}/datakey/plaintext/k-aes`, {})).status).toBe(403);
    expect((await as('POST', `/v1/kms/${NS}/batch/decrypt/k-aes`, { items: [{ ciphertext: sealed.body.ciphertext }] })).status).toBe(403);
    expect((await as('POST', `/v1/kms/${NS}/keys/k-aes/rotate`, {})).status).toBe(403);
    // It may read its key's configuration, not another key's, and a missing key is refused like an existing one.
    expect((await as('GET', `/v1/kms/${NS}/keys/k-aes`)).status).toBe(200);
    expect((await as('GET', `/v1/kms/${NS}/keys/k-ed`)).status).toBe(403);
    expect((await as('POST', `/v1/kms/${NS}/encrypt/no-such-key`, { plaintext: b64('x') })).status).toBe(403);
    expect((await as('GET', `/v1/kms/${NS}/keys`)).status).toBe(403);
    // Root decrypts what the job encrypted.
    expect((await api(base, 'POST', `/v1/kms/${NS}/decrypt/k-aes`, asRoot({ ciphertext: sealed.body.ciphertext }))).body.plaintext).toBe(b64('artifact key'));
    // A listing shows only the keys the caller may see.
    const lister = await tokenWith([{ namespace: NS, path: '*', capabilities: ['verify'] }, { namespace: NS, path: 'k-mac', capabilities: ['verify'], effect: 'deny' }]);
    const list = await api(base, 'GET', `/v1/kms/${NS}/keys`, { token: lister });
    expect(list.body.keys.map((k: { name: string }) => k.name)).not.toContain('k-mac');
    expect(list.body.keys.map((k: { name: string }) => k.name)).toContain('k-aes');
  });
});
