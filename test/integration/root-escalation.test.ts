// No way from server admin to root. A non-root server admin (`admin` on `*`) tries every
// identity-management route on rows that hold `root` (as an older server could have written
// them) and on new ones, then logs in by every method (userpass, group membership, AppRole,
// JWT, client certificate) and by token/create and renew: no token it ends up with holds
// `root` or can do what only root can. Over real HTTPS with mutual TLS, on PGlite and PostgreSQL.
import { readFileSync } from 'node:fs';
import { sql, type Kysely } from 'kysely';
import type { RunningServer } from '@coffer/server/server';
import { migrationProvider } from '@coffer/server/storage/migrations';
import { CertDir, httpsRequest, type CertFiles, type HttpsResult } from '../helpers/tls.js';
import { LocalOidcIssuer } from '../helpers/oidc.js';
import { createStore, describeEachStorage, startTestServer, type TestStore } from '../helpers/server.js';

// Every capability there is: the secret ones and, since the KMS, one per key operation and key-admin.
const ALL_CAPABILITIES = ['read', 'list', 'create', 'update', 'delete', 'destroy', 'admin', 'encrypt', 'decrypt', 'rewrap', 'datakey', 'sign', 'verify', 'hmac', 'key-admin'];

describeEachStorage('no escalation from server admin to root', (kind) => {
  let certs: CertDir;
  let serverCert: CertFiles;
  let clientCa: CertFiles;
  let service: CertFiles;
  let store: TestStore;
  let server: RunningServer;
  let shares: string[];
  let root: string;
  let admin: string;
  let realIssuer: LocalOidcIssuer;
  let evilIssuer: LocalOidcIssuer;

  const call = (method: string, path: string, opts: { token?: string; body?: unknown; client?: CertFiles } = {}): Promise<HttpsResult> =>
    httpsRequest(`${server.url}${path}`, {
      method,
      ca: serverCert.cert,
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.body !== undefined ? { body: opts.body } : {}),
      ...(opts.client ? { cert: opts.client.cert, key: readFileSync(opts.client.keyFile, 'utf8') } : {}),
    });
  const asAdmin = (method: string, path: string, body?: unknown) => call(method, path, { token: admin, ...(body === undefined ? {} : { body }) });
  const asRoot = (method: string, path: string, body?: unknown) => call(method, path, { token: root, ...(body === undefined ? {} : { body }) });
  const expectStatus = (res: HttpsResult, status: number, code?: string) =>
    expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code: code ?? res.body?.error?.code });
  const login = async (path: string, body: unknown, client?: CertFiles): Promise<string> => {
    const res = await call('POST', path, { body, ...(client ? { client } : {}) });
    expectStatus(res, 200);
    expect(res.body.auth.policies).not.toContain('root');
    return res.body.auth.client_token as string;
  };

  /** A token that is not root: no `root` policy, an expiry, no root-only power, nothing root's rows granted. */
  async function expectNoRoot(token: string, what: string): Promise<void> {
    const self = await call('GET', '/v1/auth/token/lookup-self', { token });
    expect({ what, status: self.status, root: self.body.policies.includes('root'), expires: self.body.expires_at !== null }).toEqual({
      what,
      status: 200,
      root: false,
      expires: true,
    });
    // Root-only: a root token (or any token with a policy the caller does not hold).
    expectStatus(await call('POST', '/v1/auth/token/create', { token, body: { policies: ['root'] } }), 403, 'permission_denied');
    // Root's "everything, denies ignored": the crown secret is denied to every policy but root.
    const caps = await call('POST', '/v1/sys/capabilities-self', { token, body: { namespace: 'vault', path: 'crown/jewel' } });
    expect({ what, caps: caps.body.capabilities }).not.toEqual({ what, caps: ALL_CAPABILITIES });
    expect({ what, read: (await call('GET', '/v1/secrets/vault/crown/jewel', { token })).status }).toEqual({ what, read: 403 });
  }

  /** Writes `root` into a row's policy list directly, as a server before this rule could have. */
  async function legacyRoot(table: 'users' | 'groups' | 'approle_roles' | 'jwt_roles' | 'cert_roles', key: string): Promise<void> {
    const db = server.core.db as unknown as Kysely<unknown>;
    if (table === 'users') await sql`update users set policies = '["root"]'::jsonb where username = ${key}`.execute(db);
    else if (table === 'groups') await sql`update groups set policies = '["root"]'::jsonb where name = ${key}`.execute(db);
    else await sql`update ${sql.table(table)} set config = jsonb_set(config, '{policies}', '["root"]'::jsonb) where name = ${key}`.execute(db);
  }

  beforeAll(async () => {
    certs = new CertDir();
    serverCert = certs.server('server');
    clientCa = certs.ca('client-ca');
    service = certs.client('service', '/CN=svc-1/O=Acme', clientCa);
    realIssuer = await LocalOidcIssuer.start(['ES256']);
    evilIssuer = await LocalOidcIssuer.start(['ES256']);
    store = await createStore(kind);
    server = await startTestServer(store, {
      tlsCertFile: serverCert.certFile,
      tlsKeyFile: serverCert.keyFile,
      tlsClientCaFile: clientCa.certFile,
      loginRatePerSecond: 0,
      jwksCooldownSeconds: 0,
    });
    const init = await call('POST', '/v1/sys/init', { body: { shares: 2, threshold: 2 } });
    shares = init.body.shares;
    for (const share of shares) await call('POST', '/v1/sys/unseal', { body: { share } });
    root = init.body.root_token;

    expectStatus(await asRoot('POST', '/v1/namespaces', { name: 'vault' }), 201);
    expectStatus(await asRoot('PUT', '/v1/secrets/vault/crown/jewel', { data: { v: 'only root reads this' } }), 200);
    expectStatus(await asRoot('PUT', '/v1/sys/policies/server-admin', {
      rules: [
        { namespace: '*', path: '*', capabilities: ['admin'] },
        { namespace: 'vault', path: 'crown/*', capabilities: ALL_CAPABILITIES.filter((c) => c !== 'admin'), effect: 'deny' },
      ],
    }), 201);
    expectStatus(await asRoot('PUT', '/v1/sys/policies/placeholder', { rules: [] }), 201);
    expectStatus(await asRoot('PUT', '/v1/auth/userpass/users/mallory', { password: 'mallory-password', policies: ['server-admin'] }), 201);
    admin = await login('/v1/auth/userpass/login', { username: 'mallory', password: 'mallory-password' });

    // Rows that hold root, as an older server let root write them.
    expectStatus(await asRoot('PUT', '/v1/auth/userpass/users/legacy-root', { password: 'unknown-to-mallory', policies: ['placeholder'] }), 201);
    expectStatus(await asRoot('PUT', '/v1/auth/groups/legacy-root-group', { policies: ['placeholder'] }), 201);
    expectStatus(await asRoot('PUT', '/v1/auth/approle/roles/legacy-root-role', { policies: ['placeholder'] }), 201);
    expectStatus(await asRoot('PUT', '/v1/auth/jwt/issuers/ci', { issuer: realIssuer.url, jwks_url: `${realIssuer.url}/jwks` }), 201);
    expectStatus(await asRoot('PUT', '/v1/auth/jwt/roles/legacy-root-jwt', { issuer: 'ci', bound_audiences: ['coffer'], policies: ['placeholder'] }), 201);
    expectStatus(await asRoot('PUT', '/v1/auth/cert/roles/legacy-root-cert', { allowed_common_names: ['svc-*'], policies: ['placeholder'] }), 201);
    await legacyRoot('users', 'legacy-root');
    await legacyRoot('groups', 'legacy-root-group');
    await legacyRoot('approle_roles', 'legacy-root-role');
    await legacyRoot('jwt_roles', 'legacy-root-jwt');
    await legacyRoot('cert_roles', 'legacy-root-cert');
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
    certs?.cleanup();
    await realIssuer?.stop();
    await evilIssuer?.stop();
  });

  it('the admin is a server admin and not root', async () => {
    expectStatus(await asAdmin('GET', '/v1/sys/policies'), 200);
    await expectNoRoot(admin, 'the admin\'s own token');
  });

  it('refuses `root` in the policies of a user, group or role, for root too (400)', async () => {
    const attempts: Array<[string, string, unknown]> = [
      ['PUT', '/v1/auth/userpass/users/new-user', { password: 'long-enough-1', policies: ['root'] }],
      ['PUT', '/v1/auth/userpass/users/mallory', { policies: ['server-admin', 'root'] }],
      ['PUT', '/v1/auth/groups/new-group', { policies: ['root'] }],
      ['PUT', '/v1/auth/groups/legacy-root-group', { policies: ['root'], members: ['mallory'] }],
      ['PUT', '/v1/auth/approle/roles/new-role', { policies: ['root'] }],
      ['PUT', '/v1/auth/jwt/roles/new-jwt', { issuer: 'ci', bound_audiences: ['coffer'], policies: ['root'] }],
      ['PUT', '/v1/auth/cert/roles/new-cert', { allowed_common_names: ['svc-*'], policies: ['root'] }],
    ];
    for (const [method, path, body] of attempts) {
      for (const token of [admin, root]) {
        const res = await call(method, path, { token, body });
        expect({ path, token: token === root ? 'root' : 'admin', status: res.status, code: res.body?.error?.code }).toEqual({
          path,
          token: token === root ? 'root' : 'admin',
          status: 400,
          code: 'invalid_request',
        });
      }
    }
    // Nothing was created or changed.
    expectStatus(await asRoot('GET', '/v1/auth/userpass/users/new-user'), 404);
    expect((await asRoot('GET', '/v1/auth/userpass/users/mallory')).body.policies).toEqual(['server-admin']);
    expect((await asRoot('GET', '/v1/auth/groups/legacy-root-group')).body.members).toEqual([]);
  });

  it('userpass: a new user in a root group, a reset password, joining the group — none logs in as root', async () => {
    expectStatus(await asAdmin('PUT', '/v1/auth/userpass/users/sidekick', { password: 'sidekick-password', groups: ['legacy-root-group'] }), 201);
    await expectNoRoot(await login('/v1/auth/userpass/login', { username: 'sidekick', password: 'sidekick-password' }), 'new user in a root group');

    expectStatus(await asAdmin('PUT', '/v1/auth/userpass/users/legacy-root', { password: 'mallory-chose-this' }), 200);
    await expectNoRoot(await login('/v1/auth/userpass/login', { username: 'legacy-root', password: 'mallory-chose-this' }), 'password reset of a root user');

    expectStatus(await asAdmin('PUT', '/v1/auth/groups/legacy-root-group', { members: ['mallory', 'sidekick'] }), 200);
    await expectNoRoot(await login('/v1/auth/userpass/login', { username: 'mallory', password: 'mallory-password' }), 'admin joined a root group');
  });

  it('AppRole: role-id and a fresh secret_id of a root role log in without root', async () => {
    const roleId = (await asAdmin('GET', '/v1/auth/approle/roles/legacy-root-role/role-id')).body.role_id;
    const minted = await asAdmin('POST', '/v1/auth/approle/roles/legacy-root-role/secret-id', {});
    expectStatus(minted, 201);
    await expectNoRoot(await login('/v1/auth/approle/login', { role_id: roleId, secret_id: minted.body.secret_id }), 'AppRole with root');
  });

  it('JWT: pointing a root role\'s issuer at keys the admin holds logs in without root', async () => {
    expectStatus(await asAdmin('PUT', '/v1/auth/jwt/issuers/ci', { issuer: evilIssuer.url, jwks_url: `${evilIssuer.url}/jwks` }), 200);
    const forged = await evilIssuer.mint({ sub: 'mallory' }, { audience: 'coffer' });
    await expectNoRoot(await login('/v1/auth/jwt/login', { role: 'legacy-root-jwt', jwt: forged }), 'JWT role with root');
  });

  it('certificate: a root certificate role logs in without root', async () => {
    await expectNoRoot(await login('/v1/auth/cert/login', { role: 'legacy-root-cert' }, service), 'certificate role with root');
  });

  it('policies: the root policy cannot be written, deleted or shadowed; a do-everything policy is still not root', async () => {
    expectStatus(await asAdmin('PUT', '/v1/sys/policies/root', { rules: [] }), 400, 'invalid_request');
    expectStatus(await asAdmin('DELETE', '/v1/sys/policies/root'), 400, 'invalid_request');
    expectStatus(await asAdmin('PUT', '/v1/sys/policies/Root', { rules: [] }), 400, 'invalid_request');
    expect((await asAdmin('GET', '/v1/sys/policies/root')).body.rules).toEqual([{ namespace: '*', path: '*', capabilities: ALL_CAPABILITIES, effect: 'allow' }]);
    // An admin may give itself every capability everywhere: that is admin's to give. It is
    // still not root: an explicit deny holds, and root-only powers stay out of reach.
    expectStatus(await asAdmin('PUT', '/v1/sys/policies/everything', { rules: [{ namespace: '*', path: '*', capabilities: ALL_CAPABILITIES }] }), 201);
    expectStatus(await asAdmin('PUT', '/v1/auth/userpass/users/mallory', { policies: ['server-admin', 'everything'] }), 200);
    await expectNoRoot(await login('/v1/auth/userpass/login', { username: 'mallory', password: 'mallory-password' }), 'admin with a do-everything policy');
  });

  it('token/create and renew never add root', async () => {
    expectStatus(await asAdmin('POST', '/v1/auth/token/create', { policies: ['root'] }), 403, 'permission_denied');
    expectStatus(await asAdmin('POST', '/v1/auth/token/create', { policies: ['server-admin', 'root'] }), 403, 'permission_denied');
    const child = await asAdmin('POST', '/v1/auth/token/create', { policies: ['server-admin'], ttl: 600 });
    expectStatus(child, 201);
    await expectNoRoot(child.body.auth.client_token, 'admin\'s child token');
    const renewed = await call('POST', '/v1/auth/token/renew-self', { token: admin, body: { increment: 3600 } });
    expectStatus(renewed, 200);
    expect(renewed.body.auth.policies).toEqual(['server-admin']);
    await expectNoRoot(renewed.body.auth.client_token, 'admin\'s renewed token');
  });

  it('root itself still creates a root child token (as in Vault), which expires', async () => {
    const child = await asRoot('POST', '/v1/auth/token/create', { policies: ['root'], ttl: 600 });
    expectStatus(child, 201);
    expect(child.body.auth.policies).toEqual(['root']);
    expect(child.body.auth.expires_at).not.toBeNull();
  });

  it('an upgrade strips root from stored rows and revokes root tokens that came from a login', async () => {
    // A root token a login handed out before this rule, and a root token root made itself.
    const services = server.core.services();
    const fromLogin = await services.tokens.issue(
      { identity: 'user:legacy-root', displayName: 'legacy-root', policies: ['root'], ttlSeconds: 600, maxTtlSeconds: 600, renewable: true },
      { accessor: 'x', identity: 'root', displayName: 'root', policies: ['root'] },
    );
    const rootsChild = (await asRoot('POST', '/v1/auth/token/create', { policies: ['root'], ttl: 600 })).body.auth.client_token;
    expectStatus(await call('GET', '/v1/auth/token/lookup-self', { token: fromLogin.auth.client_token }), 200);
    const upgrade = (await migrationProvider.getMigrations())['0006_no_root_from_login']!;
    await upgrade.up(server.core.db as unknown as Kysely<unknown>);
    await server.stop();
    server = await startTestServer(store, { tlsCertFile: serverCert.certFile, tlsKeyFile: serverCert.keyFile, tlsClientCaFile: clientCa.certFile, loginRatePerSecond: 0 });
    for (const share of shares) await call('POST', '/v1/sys/unseal', { body: { share } });

    expectStatus(await call('GET', '/v1/auth/token/lookup-self', { token: fromLogin.auth.client_token }), 401, 'unauthenticated');
    expectStatus(await call('GET', '/v1/auth/token/lookup-self', { token: rootsChild }), 200);
    expectStatus(await asRoot('GET', '/v1/auth/token/lookup-self'), 200);
    expect((await asRoot('GET', '/v1/auth/userpass/users/legacy-root')).body.policies).toEqual([]);
    expect((await asRoot('GET', '/v1/auth/groups/legacy-root-group')).body.policies).toEqual([]);
    for (const path of ['approle/roles/legacy-root-role', 'jwt/roles/legacy-root-jwt', 'cert/roles/legacy-root-cert']) {
      expect({ path, policies: (await asRoot('GET', `/v1/auth/${path}`)).body.policies }).toEqual({ path, policies: [] });
    }
  });
});
