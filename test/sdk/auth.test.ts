// Logins, CI ID-token detection and token renewal in the SDK. GitHub's ID-token endpoint (a cloud
// IdP we cannot run) is stood in for by a small local HTTP server speaking its protocol; the
// Coffer side uses the scripted fetch (the e2e suites drive the real server).

import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CofferClient, CofferError, detectCiIdToken, type AuthInfo, type Clock, type FetchFn, type RenewalStop } from '@coffer/sdk';
import { failure, json, scripted } from '../helpers/fetch.js';

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmFjbWUvYXBwIn0.c2lnbmF0dXJl';
const REQUEST_TOKEN = 'gh-request-token-0123456789';

function auth(over: Partial<AuthInfo> = {}): AuthInfo {
  return {
    client_token: 'new.token.1',
    accessor: 'acc-1',
    identity: 'user:alice',
    display_name: 'alice',
    policies: ['dev'],
    lease_duration: 3600,
    expires_at: null,
    renewable: true,
    max_expires_at: null,
    ...over,
  };
}

const client = (fetch: FetchFn, token?: string) => new CofferClient({ address: 'http://127.0.0.1:8200', token, fetch, retries: 0 });

describe('login methods', () => {
  it.each([
    ['userpass', (c: CofferClient) => c.auth.userpass('alice', 'pw'), '/v1/auth/userpass/login', { username: 'alice', password: 'pw' }],
    ['approle', (c: CofferClient) => c.auth.approle('rid', 'sid'), '/v1/auth/approle/login', { role_id: 'rid', secret_id: 'sid' }],
    ['jwt', (c: CofferClient) => c.auth.jwt('ci', JWT), '/v1/auth/jwt/login', { role: 'ci', jwt: JWT }],
  ])('%s posts its credentials without the old token and switches to the new one', async (_name, login, path, body) => {
    const { fetch, calls } = scripted(json(200, { auth: auth() }), json(200, {}));
    const c = client(fetch, 'old.token');
    const result = await login(c);
    expect(result.client_token).toBe('new.token.1');
    expect(calls[0]!.url.pathname).toBe(path);
    expect(calls[0]!.method).toBe('POST');
    expect(calls[0]!.body).toEqual(body);
    expect(calls[0]!.headers.Authorization).toBeUndefined();
    await c.token.lookupSelf();
    expect(calls[1]!.headers.Authorization).toBe('Bearer new.token.1');
  });

  it('does not retry a failed login and keeps the old token', async () => {
    const { fetch, calls } = scripted(json(401, { error: { code: 'login_failed', message: 'invalid credentials', requestId: 'r' } }));
    const c = new CofferClient({ address: 'http://127.0.0.1:8200', token: 'old.token', fetch, retries: 3, retryBaseDelayMs: 0 });
    const err = await failure(c.auth.userpass('alice', 'wrong'));
    expect(err.status).toBe(401);
    expect(err.code).toBe('login_failed');
    expect(calls).toHaveLength(1);
    expect(c.getToken()).toBe('old.token');
  });

  it('auth.token checks a token with lookup-self and restores the previous one when it is refused', async () => {
    const { fetch, calls } = scripted(json(403, { error: { code: 'permission_denied', message: 'no', requestId: 'r' } }));
    const c = client(fetch, 'previous');
    await failure(c.auth.token('bad.token'));
    expect(calls[0]!.headers.Authorization).toBe('Bearer bad.token');
    expect(c.getToken()).toBe('previous');
  });
});

describe('token API', () => {
  it('renewSelf swaps in the new client_token; revokeSelf drops it', async () => {
    const { fetch, calls } = scripted(json(200, { auth: auth({ client_token: 'renewed.token' }) }), new Response(null, { status: 204 }), json(200, {}));
    const c = client(fetch, 'first.token');
    await c.token.renewSelf({ increment: 600 });
    expect(calls[0]!.url.pathname).toBe('/v1/auth/token/renew-self');
    expect(calls[0]!.body).toEqual({ increment: 600 });
    expect(c.getToken()).toBe('renewed.token');
    await c.token.revokeSelf();
    expect(calls[1]!.headers.Authorization).toBe('Bearer renewed.token');
    expect(c.getToken()).toBeUndefined();
  });

  it('create, capabilities, accessor calls use the contract paths and bodies', async () => {
    const { fetch, calls } = scripted(json(200, { auth: auth({ client_token: 'child' }) }), json(200, { capabilities: ['read', 'list'] }), json(200, {}));
    const c = client(fetch, 'admin.token');
    const child = await c.token.create({ policies: ['ci'], ttl: 60 });
    expect(child.client_token).toBe('child');
    expect(c.getToken()).toBe('admin.token'); // a child token does not replace the caller's
    expect(await c.token.capabilitiesSelf('app', 'db/password')).toEqual(['read', 'list']);
    await c.token.lookupAccessor('acc-9');
    await c.token.revokeAccessor('acc-9');
    expect(calls.map((x) => [x.url.pathname, x.body])).toEqual([
      ['/v1/auth/token/create', { policies: ['ci'], ttl: 60 }],
      ['/v1/sys/capabilities-self', { namespace: 'app', path: 'db/password' }],
      ['/v1/auth/token/lookup-accessor', { accessor: 'acc-9' }],
      ['/v1/auth/token/revoke-accessor', { accessor: 'acc-9' }],
    ]);
  });
});

/** A stand-in for the Actions runtime's ID-token endpoint: answers like GitHub and records requests. */
async function fakeGithub(answer: (url: URL) => { status: number; body: unknown }): Promise<{ url: string; requests: Array<{ url: URL; headers: IncomingHttpHeaders }>; close(): Promise<void> }> {
  const requests: Array<{ url: URL; headers: IncomingHttpHeaders }> = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    requests.push({ url, headers: req.headers });
    const { status, body } = answer(url);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    // The runner's URL carries its own query already.
    url: `http://127.0.0.1:${port}/_apis/distributedtask/hubs/build/plans/p/jobs/j/idtoken?api-version=2.0`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('CI ID-token detection', () => {
  it('GitHub Actions: asks the runner endpoint for the audience with the request token', async () => {
    const gh = await fakeGithub((url) => ({ status: 200, body: { value: url.searchParams.get('audience') === 'https://coffer.example' ? JWT : 'wrong.aud.x' } }));
    try {
      const env = { GITHUB_ACTIONS: 'true', ACTIONS_ID_TOKEN_REQUEST_URL: gh.url, ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN };
      const found = await detectCiIdToken({ env, audience: 'https://coffer.example' });
      expect(found).toEqual({ provider: 'github-actions', jwt: JWT, source: 'ACTIONS_ID_TOKEN_REQUEST_URL' });
      expect(gh.requests).toHaveLength(1);
      expect(gh.requests[0]!.url.searchParams.get('api-version')).toBe('2.0');
      expect(gh.requests[0]!.url.searchParams.get('audience')).toBe('https://coffer.example');
      expect(gh.requests[0]!.headers.authorization).toBe(`bearer ${REQUEST_TOKEN}`);
    } finally {
      await gh.close();
    }
  });

  it('GitHub Actions: oidc() logs in with the fetched token under the role (default audience "coffer")', async () => {
    const gh = await fakeGithub((url) => ({ status: 200, body: { value: url.searchParams.get('audience') === 'coffer' ? JWT : 'x.y.z' } }));
    try {
      const { fetch: cofferFetch, calls } = scripted(json(200, { auth: auth({ client_token: 'ci.token', identity: 'jwt:deploy:repo:acme/app' }) }));
      // GitHub requests go to the real network stack (the stand-in server), Coffer's to the script.
      const fetch: FetchFn = (input, init) => (String(input).startsWith(gh.url.slice(0, 20)) ? globalThis.fetch(input, init) : cofferFetch(input, init));
      const c = client(fetch);
      const env = { ACTIONS_ID_TOKEN_REQUEST_URL: gh.url, ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN };
      const result = await c.auth.oidc('deploy', { env });
      expect(result.provider).toBe('github-actions');
      expect(calls[0]!.url.pathname).toBe('/v1/auth/jwt/login');
      expect(calls[0]!.body).toEqual({ role: 'deploy', jwt: JWT });
      expect(c.getToken()).toBe('ci.token');
    } finally {
      await gh.close();
    }
  });

  it('GitHub Actions: an endpoint failure or a missing permission is a clear error without the request token', async () => {
    const gh = await fakeGithub(() => ({ status: 500, body: { message: 'boom' } }));
    try {
      const err = await failure(detectCiIdToken({ env: { ACTIONS_ID_TOKEN_REQUEST_URL: gh.url, ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN } }));
      expect(err.code).toBe('no_ci_identity');
      expect(err.message).toContain('HTTP 500');
      expect(err.message).not.toContain(REQUEST_TOKEN);
    } finally {
      await gh.close();
    }
    const noPermission = await failure(detectCiIdToken({ env: { GITHUB_ACTIONS: 'true' } }));
    expect(noPermission.code).toBe('no_ci_identity');
    expect(noPermission.message).toContain('id-token: write');
  });

  it('GitLab CI: the id_tokens variable (default COFFER_ID_TOKEN, or a named one), then CI_JOB_JWT_V2', async () => {
    expect(await detectCiIdToken({ env: { GITLAB_CI: 'true', COFFER_ID_TOKEN: JWT } })).toEqual({ provider: 'gitlab-ci', jwt: JWT, source: 'COFFER_ID_TOKEN' });
    expect(await detectCiIdToken({ env: { GITLAB_CI: 'true', MY_ID_TOKEN: `${JWT}\n` }, tokenEnv: 'MY_ID_TOKEN' })).toMatchObject({ jwt: JWT, source: 'MY_ID_TOKEN' });
    expect(await detectCiIdToken({ env: { GITLAB_CI: 'true', CI_JOB_JWT_V2: JWT } })).toMatchObject({ provider: 'gitlab-ci', source: 'CI_JOB_JWT_V2' });
    const missing = await failure(detectCiIdToken({ env: { GITLAB_CI: 'true' } }));
    expect(missing.code).toBe('no_ci_identity');
    expect(missing.message).toContain('id_tokens');
  });

  it('a configured variable wins over GitHub; a non-JWT value is refused without being echoed', async () => {
    const found = await detectCiIdToken({ env: { COFFER_ID_TOKEN: JWT, ACTIONS_ID_TOKEN_REQUEST_URL: 'http://127.0.0.1:9/never', ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'x' } });
    expect(found.provider).toBe('env');
    const bad = await failure(detectCiIdToken({ env: { COFFER_ID_TOKEN: 'not-a-jwt-secret-value' } }));
    expect(bad.code).toBe('invalid_argument');
    expect(bad.message).not.toContain('not-a-jwt-secret-value');
    const none = await failure(detectCiIdToken({ env: {} }));
    expect(none.code).toBe('no_ci_identity');
  });
});

/** A clock the test moves by hand; timers fire in order as time passes. */
class FakeClock implements Clock {
  private t = Date.parse('2026-01-01T00:00:00Z');
  private timers: Array<{ at: number; fn: () => void; id: number }> = [];
  private nextId = 1;
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  };
  clearTimeout = (id: unknown) => {
    this.timers = this.timers.filter((x) => x.id !== id);
  };
  iso(offsetMs: number) {
    return new Date(this.t + offsetMs).toISOString();
  }
  get pending() {
    return this.timers.map((x) => x.at - this.t);
  }
  /** Moves time forward, firing due timers and letting their promises settle. */
  async advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
      for (let i = 0; i < 10; i++) await Promise.resolve();
      await new Promise((r) => setImmediate(r));
    }
    this.t = end;
  }
}

describe('TokenRenewer', () => {
  it('renews at 2/3 of the remaining lifetime, swaps tokens, and stops at max_expires_at', async () => {
    const clock = new FakeClock();
    const max = clock.iso(250_000);
    let n = 0;
    const fetch: FetchFn = async () => {
      n++;
      // Each renewal extends by 90 s, capped at max.
      const expires = Math.min(clock.now() + 90_000, Date.parse(max));
      return json(200, { auth: auth({ client_token: `t${n}`, expires_at: new Date(expires).toISOString(), max_expires_at: max }) });
    };
    const c = client(fetch, 't0');
    const renewed: string[] = [];
    const stops: RenewalStop[] = [];
    const renewer = c.startRenewal(
      { expires_at: clock.iso(90_000), renewable: true, max_expires_at: max },
      { clock, onRenew: (a) => renewed.push(a.client_token), onStop: (r) => stops.push(r) },
    );
    expect(clock.pending).toEqual([60_000]);
    await clock.advance(59_999);
    expect(renewed).toEqual([]);
    await clock.advance(1);
    expect(renewed).toEqual(['t1']);
    expect(c.getToken()).toBe('t1');
    // Renewals at +60 s, +120 s, +180 s: the third reaches the cap (250 s), then it stops.
    await clock.advance(200_000);
    expect(renewed).toEqual(['t1', 't2', 't3']);
    expect(c.getToken()).toBe('t3');
    expect(stops).toEqual(['max_ttl']);
    expect(renewer.running).toBe(false);
    expect(clock.pending).toEqual([]);
  });

  it('retries a network failure before expiry and stops when the token is revoked', async () => {
    const clock = new FakeClock();
    const answers = [
      () => Promise.reject(new TypeError('fetch failed')),
      () => Promise.resolve(json(200, { auth: auth({ client_token: 'ok', expires_at: new Date(clock.now() + 30_000).toISOString() }) })),
      () => Promise.resolve(json(401, { error: { code: 'unauthenticated', message: 'revoked', requestId: 'r' } })),
    ];
    let i = 0;
    const fetch: FetchFn = () => answers[i++]!();
    const c = client(fetch, 't0');
    const errors: unknown[] = [];
    const stops: RenewalStop[] = [];
    c.startRenewal({ expires_at: clock.iso(30_000), renewable: true, max_expires_at: null }, { clock, onError: (e) => errors.push(e), onStop: (r) => stops.push(r) });
    await clock.advance(20_000); // first attempt fails
    expect(errors).toHaveLength(1);
    expect((errors[0] as CofferError).code).toBe('unavailable');
    await clock.advance(1_000); // retried after 1 s
    expect(c.getToken()).toBe('ok');
    await clock.advance(20_000); // next renewal: revoked
    expect(stops).toEqual(['revoked']);
    expect(i).toBe(3);
  });

  it('stops when a renewal no longer moves the expiry (a server-side cap without max_expires_at)', async () => {
    const clock = new FakeClock();
    const fixed = clock.iso(30_000);
    let calls = 0;
    const fetch: FetchFn = async () => {
      calls++;
      return json(200, { auth: auth({ client_token: `c${calls}`, expires_at: fixed, max_expires_at: null }) });
    };
    const stops: RenewalStop[] = [];
    client(fetch, 't').startRenewal({ expires_at: fixed, renewable: true, max_expires_at: null }, { clock, onStop: (r) => stops.push(r) });
    await clock.advance(29_000);
    expect(calls).toBe(1);
    expect(stops).toEqual(['max_ttl']);
  });

  it('does nothing for tokens that never expire or cannot be renewed', () => {
    const clock = new FakeClock();
    const stops: RenewalStop[] = [];
    const c = client(scripted(json(500, {})).fetch, 't');
    c.startRenewal({ expires_at: null, renewable: false, max_expires_at: null }, { clock, onStop: (r) => stops.push(r) });
    c.startRenewal({ expires_at: clock.iso(1000), renewable: false, max_expires_at: null }, { clock, onStop: (r) => stops.push(r) });
    c.startRenewal({ expires_at: clock.iso(-1), renewable: true, max_expires_at: null }, { clock, onStop: (r) => stops.push(r) });
    expect(stops).toEqual(['not_renewable', 'not_renewable', 'expired']);
    expect(clock.pending).toEqual([]);
  });
});

describe('CofferClient.fromEnv', () => {
  it('reads COFFER_ADDR and COFFER_TOKEN; options win', async () => {
    const { fetch, calls } = scripted(json(200, {}));
    await CofferClient.fromEnv({ fetch }, { COFFER_ADDR: 'http://10.1.2.3:8300', COFFER_TOKEN: 'env.token' }).token.lookupSelf();
    expect(calls[0]!.url.origin).toBe('http://10.1.2.3:8300');
    expect(calls[0]!.headers.Authorization).toBe('Bearer env.token');
    await CofferClient.fromEnv({ fetch, token: 'explicit' }, {}).token.lookupSelf();
    expect(calls[1]!.url.origin).toBe('http://127.0.0.1:8200');
    expect(calls[1]!.headers.Authorization).toBe('Bearer explicit');
  });
});
