// A GitHub-Actions-like pipeline, end to end against the real server process on
// PostgreSQL: the local issuer mints a job's ID token, the job logs in with a role
// bound to repository=acme/app and ref=refs/heads/main, and `coffer run` injects the
// bound namespace's secrets into a command. Another repository or branch is refused
// with a clear 403; the job's token cannot reach other namespaces.
import { describeIfPostgres } from '../helpers/env.js';
import { LocalOidcIssuer } from '../helpers/oidc.js';
import { runCli, startServerProcess, type ServerProcess } from '../helpers/process.js';
import { api, createStore, initAndUnseal, type TestStore } from '../helpers/server.js';

describeIfPostgres('GitHub-Actions-like OIDC flow [postgres, real processes]', () => {
  let store: TestStore;
  let server: ServerProcess;
  let issuer: LocalOidcIssuer;
  let root: string;
  const audience = 'https://coffer.acme.example';

  beforeAll(async () => {
    issuer = await LocalOidcIssuer.start(['RS256']);
    store = await createStore('postgres');
    server = await startServerProcess({ COFFER_DATABASE_URL: String(store.config.databaseUrl), COFFER_LOG_LEVEL: 'warn' });
    ({ token: root } = await initAndUnseal(server.url));
    const asRoot = (body: unknown) => ({ token: root, body });
    for (const ns of ['app-prod', 'billing-prod']) await api(server.url, 'POST', '/v1/namespaces', asRoot({ name: ns }));
    await api(server.url, 'PUT', '/v1/secrets/app-prod/db/password', asRoot({ data: { password: 'pg-pass-123' } }));
    await api(server.url, 'PUT', '/v1/secrets/app-prod/stripe/key', asRoot({ data: { key: 'sk_live_abc' } }));
    await api(server.url, 'PUT', '/v1/secrets/billing-prod/other', asRoot({ data: { v: 'not-for-app' } }));
    await api(server.url, 'PUT', '/v1/sys/policies/app-prod-ci', asRoot({ rules: [{ namespace: 'app-prod', path: '*', capabilities: ['read', 'list'] }] }));
    expect((await api(server.url, 'PUT', '/v1/auth/jwt/issuers/github-actions', asRoot({ issuer: issuer.url, discovery_url: issuer.url }))).status).toBe(201);
    const role = await api(server.url, 'PUT', '/v1/auth/jwt/roles/acme-app-main', asRoot({
      issuer: 'github-actions',
      bound_audiences: [audience],
      bound_claims: { repository: 'acme/app', ref: 'refs/heads/main' },
      claim_mappings: { repository: 'repository', run_id: 'run_id' },
      policies: ['app-prod-ci'],
      token_ttl: 900,
    }));
    expect(role.status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
    await issuer?.stop();
  });

  const jobLogin = async (repository: string, ref: string) =>
    api(server.url, 'POST', '/v1/auth/jwt/login', {
      body: { role: 'acme-app-main', jwt: await issuer.mint(LocalOidcIssuer.githubClaims(repository, ref), { audience }) },
    });

  it('a main-branch job of acme/app logs in and runs with the namespace\'s secrets injected', async () => {
    const login = await jobLogin('acme/app', 'refs/heads/main');
    expect(login.status).toBe(200);
    expect(login.body.auth.metadata).toMatchObject({ repository: 'acme/app', run_id: '1234567890' });
    const run = await runCli(
      ['run', '--ns', 'app-prod', '--', process.execPath, '-e', 'console.log(process.env.DB_PASSWORD + "|" + process.env.STRIPE_KEY)'],
      { env: { COFFER_ADDR: server.url, COFFER_TOKEN: login.body.auth.client_token, HOME: '/nonexistent' } },
    );
    expect(run.stderr).toMatch(/^coffer: injected \d+ variables from app-prod:\/\n$/);
    expect(run.stdout.trim()).toBe('pg-pass-123|sk_live_abc');
    expect(run.code).toBe(0);
  });

  it('the job\'s token cannot read another namespace', async () => {
    const token = (await jobLogin('acme/app', 'refs/heads/main')).body.auth.client_token;
    const res = await api(server.url, 'GET', '/v1/secrets/billing-prod/other', { token });
    expect(res.status).toBe(403);
    const run = await runCli(['run', '--ns', 'billing-prod', '--', 'true'], { env: { COFFER_ADDR: server.url, COFFER_TOKEN: token, HOME: '/nonexistent' } });
    expect(run.code).toBe(3);
  });

  it.each([
    ['a fork (another repository)', 'evil/app', 'refs/heads/main', 'claim repository does not match'],
    ['a feature branch', 'acme/app', 'refs/heads/feature/x', 'claim ref does not match'],
  ])('%s is refused with a clear 403', async (_what, repository, ref, message) => {
    const res = await jobLogin(repository, ref);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('permission_denied');
    expect(res.body.error.message).toContain(message);
  });
});
