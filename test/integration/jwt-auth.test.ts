// OIDC/JWT federation against a local issuer with real RS256 and ES256 keys:
// discovery, JWKS URL and static keys; bound audiences and claims (exact and glob);
// GitHub Actions, GitLab CI and Kubernetes service-account token shapes; key rotation;
// and every way a token can be wrong.
import { createHmac } from 'node:crypto';
import type { RunningServer } from '@coffer/server/server';
import { LocalOidcIssuer } from '../helpers/oidc.js';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describeEachStorage('JWT/OIDC login', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  let gh: LocalOidcIssuer;
  let gitlab: LocalOidcIssuer;
  const asRoot = (body?: unknown) => ({ token: root, ...(body === undefined ? {} : { body }) });
  const jwtLogin = (role: string, jwt: string) => api(base, 'POST', '/v1/auth/jwt/login', { body: { role, jwt } });

  beforeAll(async () => {
    gh = await LocalOidcIssuer.start(['RS256', 'ES256']);
    gitlab = await LocalOidcIssuer.start(['ES256']);
    store = await createStore(kind);
    server = await startTestServer(store, { loginRatePerSecond: 0, jwksCooldownSeconds: 0 });
    base = server.url;
    ({ token: root } = await initAndUnseal(base));
    await api(base, 'POST', '/v1/namespaces', asRoot({ name: 'app-prod' }));
    await api(base, 'PUT', '/v1/secrets/app-prod/db/password', asRoot({ data: { value: 's3cret' } }));
    await api(base, 'PUT', '/v1/sys/policies/app-prod-read', asRoot({ rules: [{ namespace: 'app-prod', path: '*', capabilities: ['read', 'list'] }] }));
    expect((await api(base, 'PUT', '/v1/auth/jwt/issuers/github', asRoot({ issuer: gh.url, discovery_url: gh.url }))).status).toBe(201);
    expect((await api(base, 'PUT', '/v1/auth/jwt/issuers/gitlab', asRoot({ issuer: gitlab.url, jwks_url: `${gitlab.url}/jwks` }))).status).toBe(201);
    const role = await api(base, 'PUT', '/v1/auth/jwt/roles/app-deploy', asRoot({
      issuer: 'github',
      bound_audiences: ['https://coffer.example.com'],
      bound_claims: { repository: 'acme/app', ref: 'refs/heads/main' },
      user_claim: 'sub',
      claim_mappings: { repository: 'repository', job_workflow_ref: 'workflow', environment: 'environment' },
      policies: ['app-prod-read'],
      token_ttl: 600,
    }));
    expect(role.status).toBe(201);
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
    await gh?.stop();
    await gitlab?.stop();
  });

  const ghToken = (repository: string, ref: string, opts = {}) =>
    gh.mint(LocalOidcIssuer.githubClaims(repository, ref), { audience: 'https://coffer.example.com', ...opts });

  it('logs a GitHub Actions job in and lets it read the bound namespace', async () => {
    const res = await jwtLogin('app-deploy', await ghToken('acme/app', 'refs/heads/main'));
    expect(res.status).toBe(200);
    expect(res.body.auth).toMatchObject({
      identity: 'jwt:app-deploy:repo:acme/app:ref:refs/heads/main',
      policies: ['app-prod-read'],
      lease_duration: 600,
      metadata: { role: 'app-deploy', repository: 'acme/app', environment: 'production', workflow: 'acme/app/.github/workflows/deploy.yml@refs/heads/main' },
    });
    const read = await api(base, 'GET', '/v1/secrets/app-prod/db/password', { token: res.body.auth.client_token });
    expect(read.body.data.value).toBe('s3cret');
  });

  it('accepts ES256 tokens from the same issuer', async () => {
    const kid = gh['keys'].find((k: { alg: string }) => k.alg === 'ES256')!.kid;
    expect((await jwtLogin('app-deploy', await ghToken('acme/app', 'refs/heads/main', { kid }))).status).toBe(200);
  });

  it.each([
    ['another repository', 'acme/other', 'refs/heads/main', 'claim repository'],
    ['another branch', 'acme/app', 'refs/heads/feature', 'claim ref'],
  ])('refuses %s with a clear 403', async (_what, repo, ref, names) => {
    const res = await jwtLogin('app-deploy', await ghToken(repo, ref));
    expectError(res, 403, 'permission_denied');
    expect(res.body.error.message).toContain(names);
  });

  it('refuses a token for another audience with 403', async () => {
    const res = await jwtLogin('app-deploy', await ghToken('acme/app', 'refs/heads/main', { audience: 'sts.amazonaws.com' }));
    expectError(res, 403, 'permission_denied');
    expect(res.body.error.message).toContain('audience');
  });

  it('refuses expired, not-yet-valid, foreign-issuer, tampered and unsigned tokens with 401', async () => {
    const cases = [
      await ghToken('acme/app', 'refs/heads/main', { expiresIn: -120 }),
      await ghToken('acme/app', 'refs/heads/main', { notBefore: 600 }),
      await ghToken('acme/app', 'refs/heads/main', { issuer: 'https://token.actions.githubusercontent.com' }),
      // signed by another issuer's key under a kid the real issuer does not publish
      await gitlab.mint(LocalOidcIssuer.githubClaims('acme/app', 'refs/heads/main'), { audience: 'https://coffer.example.com', issuer: gh.url }),
    ];
    const good = await ghToken('acme/app', 'refs/heads/main');
    const [h, p, sig] = good.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    cases.push(`${h}.${b64url({ ...claims, repository: 'acme/app', ref: 'refs/heads/main', sub: 'evil' })}.${sig}`);
    cases.push(`${b64url({ alg: 'none', typ: 'JWT' })}.${p}.`);
    // HS256 "signed" with the issuer's public key: the classic algorithm-confusion attack.
    const hs = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${p}`;
    cases.push(`${hs}.${createHmac('sha256', await gh.publicKeyPem()).update(hs).digest('base64url')}`);
    cases.push('not-a-jwt');
    for (const jwt of cases) expectError(await jwtLogin('app-deploy', jwt), 401, 'login_failed');
    expectError(await jwtLogin('no-such-role', good), 401, 'login_failed');
  });

  it('follows the issuer\'s key rotation: an unknown kid refetches the JWKS', async () => {
    expect((await jwtLogin('app-deploy', await ghToken('acme/app', 'refs/heads/main'))).status).toBe(200);
    const before = gh.jwksFetches;
    const kid = await gh.rotate('RS256');
    const res = await jwtLogin('app-deploy', await ghToken('acme/app', 'refs/heads/main', { kid }));
    expect(res.status).toBe(200);
    expect(gh.jwksFetches).toBeGreaterThan(before);
  });

  it('binds GitLab CI id_tokens with glob claims (protected refs only)', async () => {
    await api(base, 'PUT', '/v1/auth/jwt/roles/gitlab-deploy', asRoot({
      issuer: 'gitlab',
      bound_audiences: ['coffer'],
      bound_claims: { project_path: 'acme/*', ref_protected: 'true', ref: ['main', 'release-*'] },
      bound_claims_type: 'glob',
      user_claim: 'project_path',
      policies: ['app-prod-read'],
    }));
    const claims = (ref: string, prot: boolean) => ({ sub: `project_path:acme/api:ref_type:branch:ref:${ref}`, project_path: 'acme/api', ref, ref_protected: prot, namespace_path: 'acme' });
    expect((await jwtLogin('gitlab-deploy', await gitlab.mint(claims('release-1.2', true)))).body.auth.display_name).toBe('acme/api');
    expectError(await jwtLogin('gitlab-deploy', await gitlab.mint(claims('main', false))), 403, 'permission_denied');
    expectError(await jwtLogin('gitlab-deploy', await gitlab.mint(claims('feature-x', true))), 403, 'permission_denied');
  });

  it('binds Kubernetes service-account tokens by nested claims, with static keys for air-gapped clusters', async () => {
    const k8s = await LocalOidcIssuer.start(['RS256']);
    try {
      await api(base, 'PUT', '/v1/auth/jwt/issuers/cluster', asRoot({ issuer: 'https://kubernetes.default.svc', public_keys: [await k8s.publicKeyPem()] }));
      await api(base, 'PUT', '/v1/auth/jwt/roles/payments-sa', asRoot({
        issuer: 'cluster',
        bound_audiences: ['coffer'],
        bound_claims: { '/kubernetes.io/namespace': 'payments', '/kubernetes.io/serviceaccount/name': 'api' },
        policies: ['app-prod-read'],
      }));
      const token = (ns: string) =>
        k8s.mint(
          { sub: `system:serviceaccount:${ns}:api`, 'kubernetes.io': { namespace: ns, serviceaccount: { name: 'api', uid: 'u-1' } } },
          { issuer: 'https://kubernetes.default.svc' },
        );
      const ok = await jwtLogin('payments-sa', await token('payments'));
      expect(ok.status).toBe(200);
      expect(ok.body.auth.identity).toBe('jwt:payments-sa:system:serviceaccount:payments:api');
      expect(k8s.jwksFetches).toBe(0);
      expectError(await jwtLogin('payments-sa', await token('default')), 403, 'permission_denied');
    } finally {
      await k8s.stop();
    }
  });

  it('answers 503 (not 401) while the issuer\'s JWKS cannot be fetched', async () => {
    const gone = await LocalOidcIssuer.start(['RS256']);
    await api(base, 'PUT', '/v1/auth/jwt/issuers/flaky', asRoot({ issuer: gone.url, jwks_url: `${gone.url}/jwks` }));
    await api(base, 'PUT', '/v1/auth/jwt/roles/flaky', asRoot({ issuer: 'flaky', bound_audiences: ['coffer'] }));
    const token = await gone.mint({ sub: 'job' });
    await gone.stop();
    const res = await jwtLogin('flaky', token);
    expectError(res, 503, 'unavailable');
    expect(res.headers.get('retry-after')).toBe('5');
  });

  it('never records a JWT, password or secret_id in the audit log', async () => {
    const jwt = await ghToken('acme/app', 'refs/heads/main');
    await jwtLogin('app-deploy', jwt);
    await api(base, 'PUT', '/v1/auth/userpass/users/audited', asRoot({ password: 'audited-password-1' }));
    await api(base, 'POST', '/v1/auth/userpass/login', { body: { username: 'audited', password: 'audited-password-1' } });
    await api(base, 'POST', '/v1/auth/userpass/login', { body: { username: 'audited', password: 'wrong-password-2' } });
    await api(base, 'PUT', '/v1/auth/approle/roles/audited', asRoot({}));
    const rid = (await api(base, 'GET', '/v1/auth/approle/roles/audited/role-id', asRoot())).body.role_id;
    const sid = (await api(base, 'POST', '/v1/auth/approle/roles/audited/secret-id', asRoot({}))).body.secret_id;
    await api(base, 'POST', '/v1/auth/approle/login', { body: { role_id: rid, secret_id: sid } });
    const rows = await server.core.db.selectFrom('audit_log').select(['action', 'path', 'outcome', 'body']).execute();
    const all = JSON.stringify(rows);
    for (const secret of [jwt, jwt.split('.')[2]!, 'audited-password-1', 'wrong-password-2', sid, rid]) expect(all).not.toContain(secret);
    const logins = rows.filter((r) => r.action === 'auth.userpass.login' && r.path === 'audited').map((r) => r.outcome);
    expect(logins.sort()).toEqual(['denied', 'success']);
    expect(rows.some((r) => r.action === 'auth.jwt.login' && r.path === 'app-deploy' && r.outcome === 'success')).toBe(true);
    expect(rows.some((r) => r.action === 'auth.approle.login' && r.body.includes('"role_id":"hmac-sha256:'))).toBe(true);
  });

  it('rejects bad issuer and role configuration with 400 and changes nothing', async () => {
    const bad: Array<[string, unknown]> = [
      ['/v1/auth/jwt/issuers/x', { issuer: 'a' }],
      ['/v1/auth/jwt/issuers/x', { issuer: 'a', jwks_url: 'ftp://x/jwks' }],
      ['/v1/auth/jwt/issuers/x', { issuer: 'a', jwks_url: 'http://x/jwks', discovery_url: 'http://x' }],
      ['/v1/auth/jwt/issuers/x', { issuer: 'a', public_keys: ['-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----'] }],
      ['/v1/auth/jwt/issuers/x', { issuer: 'a', jwks_url: 'http://x/jwks', algorithms: ['HS256'] }],
      ['/v1/auth/jwt/roles/x', { issuer: 'github', bound_audiences: [] }],
      ['/v1/auth/jwt/roles/x', { issuer: 'missing', bound_audiences: ['a'] }],
      ['/v1/auth/jwt/roles/x', { issuer: 'github', bound_audiences: ['a'], bound_claims_type: 'regex' }],
    ];
    for (const [path, body] of bad) expectError(await api(base, 'PUT', path, asRoot(body)), 400, 'invalid_request');
    expectError(await api(base, 'GET', '/v1/auth/jwt/issuers/x', asRoot()), 404, 'not_found');
    expectError(await api(base, 'GET', '/v1/auth/jwt/roles/x', asRoot()), 404, 'not_found');
    expectError(await api(base, 'DELETE', '/v1/auth/jwt/issuers/github', asRoot()), 409, 'conflict');
  });
});
