// The authorization matrix: every authenticated endpoint × every way a token can be
// wrong (none, malformed, expired, revoked, forged signature, wrong audience, alg none)
// and every way a policy can fall short (capability missing, capability denied), plus
// the right policy. Zero bypasses allowed. Runs against real PostgreSQL.
import { constants, generateKeyPairSync, publicEncrypt, randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { RunningServer } from '@coffer/server/server';
import { AUTH_TEMPLATES, BYOK_TEMPLATES, ESCROW_TEMPLATES, routeTemplate } from '@coffer/server/http/route-template';
import { describeIfPostgres } from '../helpers/env.js';
import { api, createStore, initAndUnseal, startTestServer, tokenWithRules, type TestStore } from '../helpers/server.js';

const ALL = ['read', 'list', 'create', 'update', 'delete', 'destroy', 'admin'] as const;
type Cap = (typeof ALL)[number];
type Rule = { namespace: string; path: string; capabilities: Cap[]; effect?: 'allow' | 'deny' };

/** What the endpoint needs: a capability on a namespace, server-wide admin, or just a valid token. */
type Scope = { ns: string; cap: Cap } | 'admin' | 'any-token';

interface Endpoint {
  method: string;
  path: string | (() => string);
  body?: unknown | (() => unknown);
  scope: Scope;
  ok: number;
}

const publicKeyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

function policiesFor(scope: Scope): { right: Rule[]; without: Rule[]; deny: Rule[] } {
  if (scope === 'any-token') return { right: [], without: [], deny: [] };
  const [ns, cap] = scope === 'admin' ? ['*', 'admin' as Cap] : [scope.ns, scope.cap];
  const right: Rule[] = [{ namespace: ns, path: '*', capabilities: [cap] }];
  // `update` includes creating, so a policy "without create" lacks both.
  const missing: Cap[] = cap === 'create' ? ['create', 'update'] : [cap];
  return {
    right,
    without: [{ namespace: ns, path: '*', capabilities: ALL.filter((c) => !missing.includes(c)) }],
    deny: [...right, { namespace: ns, path: '*', capabilities: [cap], effect: 'deny' }],
  };
}

describeIfPostgres('authorization matrix [postgres]', () => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  const state: Record<string, string> = {};
  const asRoot = (body?: unknown) => ({ token: root, ...(body === undefined ? {} : { body }) });

  const nsFor = (i: number) => `mx-${i}`;
  const endpoints: Endpoint[] = [];
  const add = (e: Endpoint) => endpoints.push(e);
  let i = 0;
  const secretCase = (method: string, suffix: string, cap: Cap, ok: number, body?: unknown) => {
    const ns = nsFor(i++);
    add({ method, path: `/v1/secrets/${ns}/app/key${suffix}`, body, scope: { ns, cap }, ok });
  };
  secretCase('GET', '', 'read', 200);
  secretCase('GET', '?version=1', 'read', 200);
  secretCase('PUT', '', 'update', 200, { data: { v: 'new' } });
  secretCase('POST', '', 'update', 200, { data: { v: 'new' } });
  secretCase('DELETE', '', 'delete', 200);
  secretCase('GET', ':versions', 'list', 200);
  secretCase('POST', ':rollback', 'update', 200, { version: 1 });
  secretCase('POST', ':delete', 'delete', 200, {});
  secretCase('POST', ':undelete', 'delete', 200, {});
  secretCase('POST', ':destroy', 'destroy', 200, { versions: [1] });
  secretCase('POST', ':purge', 'destroy', 200, {});
  {
    const ns = nsFor(i++);
    add({ method: 'PUT', path: `/v1/secrets/${ns}/brand/new`, body: { data: { v: '1' } }, scope: { ns, cap: 'create' }, ok: 200 });
  }
  {
    const ns = nsFor(i++);
    add({ method: 'GET', path: `/v1/secrets/${ns}/app/`, scope: { ns, cap: 'list' }, ok: 200 });
  }
  {
    const ns = nsFor(i++);
    add({ method: 'GET', path: `/v1/bulk/${ns}/app/`, scope: { ns, cap: 'list' }, ok: 200 });
  }
  {
    const ns = nsFor(i++);
    add({ method: 'GET', path: `/v1/namespaces/${ns}`, scope: { ns, cap: 'list' }, ok: 200 });
  }
  {
    const ns = nsFor(i++);
    add({ method: 'DELETE', path: `/v1/namespaces/${ns}?force=true`, scope: { ns, cap: 'admin' }, ok: 200 });
  }
  add({ method: 'POST', path: '/v1/namespaces', body: { name: 'mx-created' }, scope: { ns: 'mx-created', cap: 'admin' }, ok: 201 });
  // KEK lifecycle and crypto-shredding (issue 3): the admin capability on the namespace.
  for (const [method, suffix, body, ok] of [
    ['GET', '/kek', undefined, 200],
    ['POST', '/kek/rotate', {}, 200],
    ['PATCH', '', { rotation_period: 86_400 }, 200],
    ['POST', '/shred', { pending_window_days: 7 }, 202],
    ['DELETE', '/shred', undefined, 200],
  ] as const) {
    const ns = nsFor(i++);
    if (method === 'DELETE') state.unshred = ns; // scheduled in beforeAll, so there is something to cancel
    add({ method, path: `/v1/namespaces/${ns}${suffix}`, body, scope: { ns, cap: 'admin' }, ok });
  }
  // BYOK and escrow (issue 3): the admin capability on the namespace; escrow ids come from beforeAll.
  const byokNs = [nsFor(i++), nsFor(i++)];
  add({ method: 'GET', path: `/v1/byok/namespaces/${byokNs[0]}/import-params`, scope: { ns: byokNs[0]!, cap: 'admin' }, ok: 200 });
  add({ method: 'POST', path: `/v1/byok/namespaces/${byokNs[1]}/import`, body: () => state.importBody && JSON.parse(state.importBody), scope: { ns: byokNs[1]!, cap: 'admin' }, ok: 200 });
  const escrowNs = [nsFor(i++), nsFor(i++), nsFor(i++), nsFor(i++)];
  add({ method: 'POST', path: '/v1/escrow/requests', body: () => ({ namespace: escrowNs[0], public_key: state.escrowPublicKey }), scope: { ns: escrowNs[0]!, cap: 'admin' }, ok: 201 });
  add({ method: 'GET', path: () => `/v1/escrow/requests/${state.escrowRead}`, scope: { ns: escrowNs[1]!, cap: 'admin' }, ok: 200 });
  add({ method: 'GET', path: `/v1/escrow/requests?namespace=${escrowNs[1]}`, scope: { ns: escrowNs[1]!, cap: 'admin' }, ok: 200 });
  // The matrix's tokens are "token:root"; the request to approve is root's own, so they may approve it.
  add({ method: 'POST', path: () => `/v1/escrow/requests/${state.escrowApprove}/approve`, body: {}, scope: { ns: escrowNs[2]!, cap: 'admin' }, ok: 200 });
  // Only the requester downloads: this request was made by a "token:root" token, like the matrix's.
  add({ method: 'POST', path: () => `/v1/escrow/requests/${state.escrowDownload}/download`, body: {}, scope: { ns: escrowNs[3]!, cap: 'admin' }, ok: 200 });
  const secretNamespaces = i;

  add({ method: 'GET', path: '/v1/namespaces', scope: 'any-token', ok: 200 });
  add({ method: 'GET', path: '/v1/auth/token/lookup-self', scope: 'any-token', ok: 200 });
  add({ method: 'POST', path: '/v1/auth/token/renew-self', body: {}, scope: 'any-token', ok: 200 });
  add({ method: 'POST', path: '/v1/auth/token/revoke-self', body: {}, scope: 'any-token', ok: 204 });
  add({ method: 'POST', path: '/v1/sys/capabilities-self', body: { namespace: 'mx-0', path: 'app/key' }, scope: 'any-token', ok: 200 });

  add({ method: 'POST', path: '/v1/auth/token/create', body: { policies: ['mx-empty'] }, scope: 'admin', ok: 201 });
  add({ method: 'POST', path: '/v1/auth/token/lookup-accessor', body: () => ({ accessor: state.victim }), scope: 'admin', ok: 200 });
  add({ method: 'POST', path: '/v1/auth/token/revoke-accessor', body: () => ({ accessor: state.victim }), scope: 'admin', ok: 204 });
  add({ method: 'POST', path: '/v1/auth/token/revoke-identity', body: { identity: 'token:fleet' }, scope: 'admin', ok: 200 });
  add({ method: 'GET', path: '/v1/sys/policies', scope: 'admin', ok: 200 });
  add({ method: 'PUT', path: '/v1/sys/policies/mx-new', body: { rules: [] }, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/sys/policies/mx-admin', scope: 'admin', ok: 200 });
  add({ method: 'DELETE', path: '/v1/sys/policies/mx-doomed', scope: 'admin', ok: 204 });
  add({ method: 'GET', path: '/v1/auth/userpass/users', scope: 'admin', ok: 200 });
  add({ method: 'PUT', path: '/v1/auth/userpass/users/mx-user', body: { password: 'a-long-password' }, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/auth/userpass/users/mx-existing', scope: 'admin', ok: 200 });
  add({ method: 'POST', path: '/v1/auth/userpass/users/mx-existing/unlock', body: {}, scope: 'admin', ok: 200 });
  add({ method: 'DELETE', path: '/v1/auth/userpass/users/mx-existing', scope: 'admin', ok: 204 });
  add({ method: 'GET', path: '/v1/auth/groups', scope: 'admin', ok: 200 });
  add({ method: 'PUT', path: '/v1/auth/groups/mx-group', body: { policies: [] }, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/auth/groups/mx-existing', scope: 'admin', ok: 200 });
  add({ method: 'DELETE', path: '/v1/auth/groups/mx-existing', scope: 'admin', ok: 204 });
  add({ method: 'GET', path: '/v1/auth/approle/roles', scope: 'admin', ok: 200 });
  add({ method: 'PUT', path: '/v1/auth/approle/roles/mx-role', body: { policies: [] }, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/auth/approle/roles/mx-existing', scope: 'admin', ok: 200 });
  add({ method: 'GET', path: '/v1/auth/approle/roles/mx-existing/role-id', scope: 'admin', ok: 200 });
  add({ method: 'POST', path: '/v1/auth/approle/roles/mx-existing/secret-id', body: {}, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/auth/approle/roles/mx-existing/secret-ids', scope: 'admin', ok: 200 });
  add({ method: 'POST', path: '/v1/auth/approle/roles/mx-existing/secret-id/revoke', body: () => ({ accessor: state.secretIdAccessor }), scope: 'admin', ok: 204 });
  add({ method: 'POST', path: '/v1/auth/approle/roles/mx-existing/unlock', body: {}, scope: 'admin', ok: 200 });
  add({ method: 'DELETE', path: '/v1/auth/approle/roles/mx-existing', scope: 'admin', ok: 204 });
  add({ method: 'GET', path: '/v1/auth/jwt/issuers', scope: 'admin', ok: 200 });
  add({ method: 'PUT', path: '/v1/auth/jwt/issuers/mx-issuer', body: { issuer: 'https://ci.example', public_keys: [publicKeyPem] }, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/auth/jwt/issuers/mx-existing', scope: 'admin', ok: 200 });
  add({ method: 'GET', path: '/v1/auth/jwt/roles', scope: 'admin', ok: 200 });
  add({ method: 'PUT', path: '/v1/auth/jwt/roles/mx-jwt', body: { issuer: 'mx-existing', bound_audiences: ['coffer'] }, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/auth/jwt/roles/mx-existing', scope: 'admin', ok: 200 });
  add({ method: 'DELETE', path: '/v1/auth/jwt/roles/mx-existing', scope: 'admin', ok: 204 });
  add({ method: 'DELETE', path: '/v1/auth/jwt/issuers/mx-unused', scope: 'admin', ok: 204 });
  add({ method: 'GET', path: '/v1/auth/cert/roles', scope: 'admin', ok: 200 });
  add({ method: 'PUT', path: '/v1/auth/cert/roles/mx-cert', body: { allowed_common_names: ['runner-*'] }, scope: 'admin', ok: 201 });
  add({ method: 'GET', path: '/v1/auth/cert/roles/mx-existing', scope: 'admin', ok: 200 });
  add({ method: 'DELETE', path: '/v1/auth/cert/roles/mx-existing', scope: 'admin', ok: 204 });
  add({ method: 'GET', path: '/v1/sys/audit', scope: 'admin', ok: 200 });
  add({ method: 'GET', path: '/v1/sys/audit/verify', scope: 'admin', ok: 200 });
  add({ method: 'POST', path: '/v1/sys/audit/hash', body: { input: 'x' }, scope: 'admin', ok: 200 });
  add({ method: 'GET', path: '/v1/sys/metrics', scope: 'admin', ok: 200 });
  // Root key operations (issue 3): server-wide admin. With the right policy they get as far as
  // the shares (or the seal type), which these bodies do not satisfy: nothing rotates here.
  add({ method: 'POST', path: '/v1/sys/rotate-root', body: {}, scope: 'admin', ok: 400 });
  add({ method: 'POST', path: '/v1/sys/rotate-root/verify', body: { shares: ['AAAA'] }, scope: 'admin', ok: 409 });
  add({ method: 'POST', path: '/v1/sys/seal-migrate', body: { to: 'pkcs11', shares: ['AAAA'] }, scope: 'admin', ok: 400 });
  add({ method: 'GET', path: '/v1/byok/root/import-params', scope: 'admin', ok: 400 });
  add({ method: 'POST', path: '/v1/byok/root/import', body: { import_token: '00000000-0000-0000-0000-000000000000', encrypted_key_material: 'AAAA' }, scope: 'admin', ok: 404 });
  // Last: sealing ends every other test.
  add({ method: 'POST', path: '/v1/sys/seal', body: {}, scope: 'admin', ok: 200 });

  /** Routes anyone may call without a token, by design. */
  const PUBLIC = ['/v1/sys/init', '/v1/sys/unseal', '/v1/sys/seal-status', '/v1/sys/health', '/v1/sys/ready', '/v1/sys/generate-root', '/v1/auth/userpass/login', '/v1/auth/approle/login', '/v1/auth/jwt/login', '/v1/auth/cert/login'];

  beforeAll(async () => {
    store = await createStore('postgres');
    server = await startTestServer(store, { loginRatePerSecond: 0 });
    base = server.url;
    ({ token: root } = await initAndUnseal(base));
    for (let n = 0; n < secretNamespaces; n++) {
      expect((await api(base, 'POST', '/v1/namespaces', asRoot({ name: nsFor(n) }))).status).toBe(201);
      await api(base, 'PUT', `/v1/secrets/${nsFor(n)}/app/key`, asRoot({ data: { v: '1' } }));
      await api(base, 'PUT', `/v1/secrets/${nsFor(n)}/app/key`, asRoot({ data: { v: '2' } }));
    }
    expect((await api(base, 'POST', `/v1/namespaces/${state.unshred}/shred`, asRoot({}))).status).toBe(202);
    await api(base, 'PUT', '/v1/sys/policies/mx-admin', asRoot({ rules: [{ namespace: '*', path: '*', capabilities: ['admin'] }] }));
    await api(base, 'PUT', '/v1/sys/policies/mx-doomed', asRoot({ rules: [] }));
    // Every matrix token also holds this empty policy, so an admin may hand it on (token/create).
    await api(base, 'PUT', '/v1/sys/policies/mx-empty', asRoot({ rules: [] }));
    state.victim = (await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['mx-admin'], display_name: 'victim' }))).body.auth.accessor;
    await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['mx-admin'], display_name: 'fleet' }));
    await api(base, 'PUT', '/v1/auth/userpass/users/mx-existing', asRoot({ password: 'a-long-password' }));
    await api(base, 'PUT', '/v1/auth/groups/mx-existing', asRoot({ policies: [] }));
    await api(base, 'PUT', '/v1/auth/approle/roles/mx-existing', asRoot({ policies: [] }));
    state.secretIdAccessor = (await api(base, 'POST', '/v1/auth/approle/roles/mx-existing/secret-id', asRoot({}))).body.accessor;
    await api(base, 'PUT', '/v1/auth/jwt/issuers/mx-existing', asRoot({ issuer: 'https://ci.example', public_keys: [publicKeyPem] }));
    await api(base, 'PUT', '/v1/auth/jwt/issuers/mx-unused', asRoot({ issuer: 'https://ci.example', public_keys: [publicKeyPem] }));
    await api(base, 'PUT', '/v1/auth/jwt/roles/mx-existing', asRoot({ issuer: 'mx-existing', bound_audiences: ['coffer'] }));
    await api(base, 'PUT', '/v1/auth/cert/roles/mx-existing', asRoot({ allowed_common_names: ['runner-*'] }));
    // BYOK: import parameters and wrapped material for the import endpoint's right-policy call.
    const params = (await api(base, 'GET', `/v1/byok/namespaces/${byokNs[1]}/import-params`, asRoot())).body;
    const wrapped = publicEncrypt({ key: params.public_key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, randomBytes(32));
    state.importBody = JSON.stringify({ import_token: params.import_token, encrypted_key_material: wrapped.toString('base64') });
    // Escrow: requests to read, to approve (root's), and to download (a "token:root" token's, approved by root).
    state.escrowPublicKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const escrowBody = (ns: string) => ({ namespace: ns, public_key: state.escrowPublicKey });
    state.escrowRead = (await api(base, 'POST', '/v1/escrow/requests', asRoot(escrowBody(escrowNs[1]!)))).body.id;
    state.escrowApprove = (await api(base, 'POST', '/v1/escrow/requests', asRoot(escrowBody(escrowNs[2]!)))).body.id;
    const requester = (await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['mx-admin'] }))).body.auth.client_token;
    state.escrowDownload = (await api(base, 'POST', '/v1/escrow/requests', { token: requester, body: escrowBody(escrowNs[3]!) })).body.id;
    expect((await api(base, 'POST', `/v1/escrow/requests/${state.escrowDownload}/approve`, asRoot({}))).status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('covers every route that needs a token', () => {
    const covered = new Set(endpoints.map((e) => routeTemplate(typeof e.path === 'function' ? e.path() : e.path)));
    const expected = [
      ...AUTH_TEMPLATES.map((t) => `/v1/auth/${t}`),
      '/v1/sys/policies', '/v1/sys/policies/:name', '/v1/sys/capabilities-self', '/v1/sys/seal', '/v1/sys/metrics',
      '/v1/sys/audit', '/v1/sys/audit/verify', '/v1/sys/audit/hash', '/v1/namespaces', '/v1/namespaces/:name',
      '/v1/namespaces/:name/kek', '/v1/namespaces/:name/kek/rotate', '/v1/namespaces/:name/shred',
      '/v1/secrets/:ns/:path', '/v1/secrets/:ns/:folder/', '/v1/bulk/:ns/:folder',
      ...['versions', 'rollback', 'delete', 'undelete', 'destroy', 'purge'].map((a) => `/v1/secrets/:ns/:path:${a}`),
      '/v1/sys/rotate-root', '/v1/sys/rotate-root/verify', '/v1/sys/seal-migrate',
      ...BYOK_TEMPLATES.map((t) => `/v1/byok/${t}`), ...ESCROW_TEMPLATES.map((t) => `/v1/escrow/${t}`),
    ].filter((t) => !PUBLIC.includes(t));
    for (const template of expected) expect({ template, covered: covered.has(template) }).toEqual({ template, covered: true });
  });

  it('refuses every defective token and every short policy, and allows the right policy, on every endpoint', async () => {
    const key = server.core.services().tokens.verificationKey!;
    const bypasses: string[] = [];
    const mint = (rules: Rule[], opts: { ttl?: number } = {}) => tokenWithRules(base, root, rules, { ...opts, alsoPolicies: ['mx-empty'] });

    // Tokens that carry the right policy but are broken in one way each.
    const prepared = [];
    for (const e of endpoints) {
      const p = policiesFor(e.scope);
      const right = await mint(p.right);
      const expired = await mint(p.right, { ttl: 1 });
      const revoked = await mint(p.right);
      expect((await api(base, 'POST', '/v1/auth/token/revoke-accessor', asRoot({ accessor: revoked.accessor }))).status).toBe(204);
      const [h, payload, sig] = right.client_token.split('.');
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
      const { aud: _aud, iss: _iss, iat: _iat, exp: _exp, nbf: _nbf, ...own } = claims;
      const defective: Record<string, string | undefined> = {
        'no token': undefined,
        malformed: 'not-a-token',
        expired: expired.client_token,
        revoked: revoked.client_token,
        'forged claims': `${h}.${b64({ ...claims, pol: ['root'] })}.${sig}`,
        'foreign key': jwt.sign(own, randomBytes(32), { algorithm: 'HS256', issuer: 'coffer', audience: 'coffer', expiresIn: 600 }),
        'wrong audience': jwt.sign(own, key as unknown as Buffer, { algorithm: 'HS256', issuer: 'coffer', audience: 'someone-else', expiresIn: 600 }),
        'wrong issuer': jwt.sign(own, key as unknown as Buffer, { algorithm: 'HS256', issuer: 'vault', audience: 'coffer', expiresIn: 600 }),
        'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`,
      };
      const without = e.scope === 'any-token' ? null : await mint(p.without);
      const denied = e.scope === 'any-token' ? null : await mint(p.deny);
      prepared.push({ e, right, defective, without, denied });
    }
    await new Promise((r) => setTimeout(r, 2100)); // let the 1-second tokens expire

    for (const { e, right, defective, without, denied } of prepared) {
      const path = typeof e.path === 'function' ? e.path() : e.path;
      const body = typeof e.body === 'function' ? e.body() : e.body;
      const call = (token?: string) => api(base, e.method, path, { ...(token ? { token } : {}), ...(body === undefined ? {} : { body }) });
      for (const [what, token] of Object.entries(defective)) {
        const res = await call(token);
        if (res.status !== 401) bypasses.push(`${e.method} ${path} with ${what}: ${res.status}`);
      }
      for (const [what, t] of [['policy without the capability', without], ['policy with a deny', denied]] as const) {
        if (!t) continue;
        const res = await call(t.client_token);
        if (res.status !== 403) bypasses.push(`${e.method} ${path} with ${what}: ${res.status}`);
      }
      const res = await call(right.client_token);
      if (res.status !== e.ok) bypasses.push(`${e.method} ${path} with the right policy: ${res.status} ${res.text.slice(0, 200)}`);
    }
    expect(bypasses).toEqual([]);
  }, 240_000);
});
