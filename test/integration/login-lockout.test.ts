// Lockouts keep the brakes on guessing without letting anyone lock a real user out: failures
// count per (name, client address), a much higher ceiling counts all addresses together, and
// an admin can lift a lockout. Clients come from different loopback addresses (127.0.0.x).
import http from 'node:http';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type ApiResponse, type TestStore } from '../helpers/server.js';

describeEachStorage('login lockout', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  const asRoot = (body?: unknown) => ({ token: root, ...(body === undefined ? {} : { body }) });

  /** A POST whose TCP connection comes from `address` (any 127.0.0.0/8 address is this host). */
  function postFrom(address: string, path: string, body: unknown): Promise<Pick<ApiResponse, 'status' | 'body'> & { retryAfter: string | undefined }> {
    const url = new URL(base);
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, method: 'POST', path, localAddress: address, agent: false, headers: { 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined, retryAfter: res.headers['retry-after'] }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
  const login = (from: string, username: string, password: string) => postFrom(from, '/v1/auth/userpass/login', { username, password });

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, {
      loginRatePerSecond: 0,
      loginMaxFailures: 3,
      loginMaxFailuresTotal: 7,
      loginLockoutSeconds: 600,
      loginLockoutMaxSeconds: 600,
    });
    base = server.url;
    ({ token: root } = await initAndUnseal(base));
    for (const user of ['carol', 'dave', 'erin']) {
      expect((await api(base, 'PUT', `/v1/auth/userpass/users/${user}`, asRoot({ password: `${user}-password-1` }))).status).toBe(201);
    }
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('a guesser locks out only their own address: the user elsewhere logs in with the right password', async () => {
    for (let i = 0; i < 3; i++) expect((await login('127.0.0.2', 'carol', `wrong-${i}`)).status).toBe(401);
    const locked = await login('127.0.0.2', 'carol', 'carol-password-1');
    expect(locked.status).toBe(429);
    expect(Number(locked.retryAfter)).toBeGreaterThan(60);
    // The lockout does not follow the name to other addresses.
    expect((await login('127.0.0.1', 'carol', 'carol-password-1')).status).toBe(200);
    // ... and the guesser stays locked (a success elsewhere does not free them).
    expect((await login('127.0.0.2', 'carol', 'carol-password-1')).status).toBe(429);
  });

  it('failures from many addresses meet a ceiling for the name, which an admin can lift', async () => {
    for (const from of ['127.0.0.3', '127.0.0.4']) {
      for (let i = 0; i < 3; i++) expect((await login(from, 'dave', `wrong-${i}`)).status).toBe(401);
    }
    expect((await login('127.0.0.5', 'dave', 'wrong-7')).status).toBe(401); // the 7th failure: the ceiling
    const everywhere = await login('127.0.0.1', 'dave', 'dave-password-1');
    expect(everywhere.status).toBe(429);
    // Unknown names meet the same answers (nothing to enumerate), and unlocking one says it was not locked.
    const unlockGhost = await api(base, 'POST', '/v1/auth/userpass/users/ghost/unlock', asRoot({}));
    expect(unlockGhost.status).toBe(200);
    expect(unlockGhost.body).toEqual({ unlocked: false });

    const unlocked = await api(base, 'POST', '/v1/auth/userpass/users/dave/unlock', asRoot({}));
    expect(unlocked.status).toBe(200);
    expect(unlocked.body).toEqual({ unlocked: true });
    expect((await login('127.0.0.1', 'dave', 'dave-password-1')).status).toBe(200);
    // The unlock lifted the per-address lockouts too.
    expect((await login('127.0.0.3', 'dave', 'dave-password-1')).status).toBe(200);
  });

  it('only an admin unlocks, and a bad name is 400', async () => {
    await api(base, 'PUT', '/v1/sys/policies/reader', asRoot({ rules: [{ namespace: '*', path: '*', capabilities: ['read', 'list'] }] }));
    const reader = (await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['reader'] }))).body.auth.client_token;
    for (let i = 0; i < 3; i++) await login('127.0.0.6', 'erin', `wrong-${i}`);
    expectError(await api(base, 'POST', '/v1/auth/userpass/users/erin/unlock', { token: reader, body: {} }), 403, 'permission_denied');
    expect((await login('127.0.0.6', 'erin', 'erin-password-1')).status).toBe(429);
    expectError(await api(base, 'POST', '/v1/auth/userpass/users/bad%20name/unlock', asRoot({})), 400, 'invalid_request');
    expectError(await api(base, 'POST', '/v1/auth/userpass/users/erin/unlock', asRoot({ everyone: true })), 400, 'invalid_request');
  });

  it('AppRole logins lock per address too, and the role can be unlocked', async () => {
    await api(base, 'PUT', '/v1/auth/approle/roles/deployer', asRoot({ policies: [] }));
    const roleId = (await api(base, 'GET', '/v1/auth/approle/roles/deployer/role-id', asRoot())).body.role_id;
    const secretId = (await api(base, 'POST', '/v1/auth/approle/roles/deployer/secret-id', asRoot({}))).body.secret_id;
    const approle = (from: string, secret: string) => postFrom(from, '/v1/auth/approle/login', { role_id: roleId, secret_id: secret });
    for (let i = 0; i < 3; i++) expect((await approle('127.0.0.7', `wrong-${i}`)).status).toBe(401);
    expect((await approle('127.0.0.7', secretId)).status).toBe(429);
    expect((await approle('127.0.0.1', secretId)).status).toBe(200);
    const unlocked = await api(base, 'POST', '/v1/auth/approle/roles/deployer/unlock', asRoot({}));
    expect(unlocked.body).toEqual({ unlocked: true });
    expect((await approle('127.0.0.7', secretId)).status).toBe(200);
    expectError(await api(base, 'POST', '/v1/auth/approle/roles/no-such-role/unlock', asRoot({})), 404, 'not_found');
  });
});
