// Where a request's token comes from: one rule, one parse. The string that is verified is the
// string the verified-token cache remembers, so no header trick can make the server remember
// one token as another.
import { randomBytes } from 'node:crypto';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

describeEachStorage('token headers', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  let alice: { client_token: string; accessor: string };
  let bob: { client_token: string; accessor: string };
  const asRoot = (body?: unknown) => ({ token: root, ...(body === undefined ? {} : { body }) });
  const lookup = (headers: Record<string, string>) => api(base, 'GET', '/v1/auth/token/lookup-self', { headers });

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { loginRatePerSecond: 0 });
    base = server.url;
    ({ token: root } = await initAndUnseal(base));
    await api(base, 'PUT', '/v1/sys/policies/nothing', asRoot({ rules: [] }));
    alice = (await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['nothing'], display_name: 'alice' }))).body.auth;
    bob = (await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['nothing'], display_name: 'bob' }))).body.auth;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('never remembers another string as a token that was verified (Bearer <A> extra + X-Coffer-Token: B)', async () => {
    const alias = randomBytes(24).toString('base64url');
    const tricked = await lookup({ authorization: `Bearer ${alice.client_token} extra`, 'x-coffer-token': alias });
    expectError(tricked, 401, 'unauthenticated');
    // The alias on its own is nothing: it was never verified, so it cannot be a cache hit either.
    expectError(await lookup({ 'x-coffer-token': alias }), 401, 'unauthenticated');
    expectError(await lookup({ authorization: `Bearer ${alias}` }), 401, 'unauthenticated');
    // The real token still works, from either header.
    expect((await lookup({ authorization: `Bearer ${alice.client_token}` })).body.accessor).toBe(alice.accessor);
    expect((await lookup({ 'x-coffer-token': alice.client_token })).body.accessor).toBe(alice.accessor);
  });

  it('refuses two different tokens with 400, and accepts the same token in both headers', async () => {
    const both = await lookup({ authorization: `Bearer ${alice.client_token}`, 'x-coffer-token': bob.client_token });
    expectError(both, 400, 'invalid_request');
    expect(both.text).not.toContain(alice.client_token);
    expect(both.text).not.toContain(bob.client_token);
    // Whichever was verified before, the pair is refused (no cache answers for one of them).
    await lookup({ 'x-coffer-token': bob.client_token });
    expectError(await lookup({ authorization: `Bearer ${alice.client_token}`, 'x-coffer-token': bob.client_token }), 400, 'invalid_request');
    const same = await lookup({ authorization: `Bearer ${alice.client_token}`, 'x-coffer-token': alice.client_token });
    expect(same.status).toBe(200);
    expect(same.body.accessor).toBe(alice.accessor);
  });

  it.each([
    ['a Basic credential', () => `Basic ${Buffer.from('user:pass').toString('base64')}`],
    ['the scheme alone', () => 'Bearer'],
    ['a token with trailing words', () => `Bearer ${alice.client_token} ${bob.client_token}`],
    ['a token with characters no token has', () => `Bearer ${alice.client_token}"`],
    ['a token without a scheme', () => alice.client_token],
  ])('refuses a malformed Authorization header (%s) with 401, even with a good X-Coffer-Token', async (_what, value) => {
    expectError(await lookup({ authorization: value() }), 401, 'unauthenticated');
    expectError(await lookup({ authorization: value(), 'x-coffer-token': alice.client_token }), 401, 'unauthenticated');
  });

  it('refuses a malformed X-Coffer-Token even beside a good Authorization header', async () => {
    expectError(await lookup({ authorization: `Bearer ${alice.client_token}`, 'x-coffer-token': `${alice.client_token} x` }), 401, 'unauthenticated');
    expectError(await lookup({ 'x-coffer-token': 'a'.repeat(9000) }), 401, 'unauthenticated');
  });

  it('accepts the scheme in any case and asks for a token when there is none', async () => {
    expect((await lookup({ authorization: `bearer ${alice.client_token}` })).status).toBe(200);
    const none = await lookup({});
    expectError(none, 401, 'unauthenticated');
    expect(none.body.error.message).toContain('a token is required');
  });
});
