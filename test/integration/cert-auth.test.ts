// Machine identities by client certificate (mutual TLS): the listener verifies the chain
// against the client CA; a role accepts certificates by common name, DNS/URI SAN or
// organisation, and gives their tokens policies. Real TLS on 127.0.0.1, real openssl certs.
import { readFileSync } from 'node:fs';
import type { RunningServer } from '@coffer/server/server';
import { CertDir, httpsRequest, type CertFiles } from '../helpers/tls.js';
import { createStore, describeEachStorage, startTestServer, type TestStore } from '../helpers/server.js';

describeEachStorage('client-certificate login', (kind) => {
  let certs: CertDir;
  let serverCert: CertFiles;
  let runner: CertFiles;
  let spiffe: CertFiles;
  let stranger: CertFiles;
  let store: TestStore;
  let server: RunningServer;
  let root: string;
  const key = (c: CertFiles) => readFileSync(c.keyFile, 'utf8');
  const call = (method: string, path: string, opts: { token?: string; body?: unknown; client?: CertFiles } = {}) =>
    httpsRequest(`${server.url}${path}`, {
      method,
      ca: serverCert.cert,
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.body !== undefined ? { body: opts.body } : {}),
      ...(opts.client ? { cert: opts.client.cert, key: key(opts.client) } : {}),
    });

  beforeAll(async () => {
    certs = new CertDir();
    serverCert = certs.server('server');
    const clientCa = certs.ca('client-ca');
    runner = certs.client('runner', '/CN=ci-runner-7/O=Acme Build', clientCa);
    spiffe = certs.client('spiffe', '/CN=payments-api', clientCa, 'URI:spiffe://acme.example/ns/payments/sa/api,DNS:api.payments.svc');
    stranger = certs.client('stranger', '/CN=ci-runner-7/O=Acme Build', certs.ca('other-ca'));
    store = await createStore(kind);
    server = await startTls(store, serverCert, clientCa);
    const init = await call('POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } });
    await call('POST', '/v1/sys/unseal', { body: { share: init.body.shares[0] } });
    root = init.body.root_token;
    await call('POST', '/v1/namespaces', { token: root, body: { name: 'payments' } });
    await call('PUT', '/v1/secrets/payments/db', { token: root, body: { data: { password: 'pw' } } });
    await call('PUT', '/v1/sys/policies/payments-read', { token: root, body: { rules: [{ namespace: 'payments', path: '*', capabilities: ['read'] }] } });
    expect((await call('PUT', '/v1/auth/cert/roles/runners', {
      token: root,
      body: { allowed_common_names: ['ci-runner-*'], allowed_organizations: ['Acme Build'], policies: ['payments-read'], token_ttl: 300 },
    })).status).toBe(201);
    expect((await call('PUT', '/v1/auth/cert/roles/payments-api', {
      token: root,
      body: { allowed_uri_sans: ['spiffe://acme.example/ns/payments/*'], policies: ['payments-read'] },
    })).status).toBe(201);
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
    certs?.cleanup();
  });

  it('logs a runner in with its certificate and gives it the role\'s policies', async () => {
    const res = await call('POST', '/v1/auth/cert/login', { body: { role: 'runners' }, client: runner });
    expect(res.status).toBe(200);
    expect(res.body.auth).toMatchObject({ identity: 'cert:runners:ci-runner-7', policies: ['payments-read'], lease_duration: 300 });
    expect(res.body.auth.metadata).toMatchObject({ role: 'runners', common_name: 'ci-runner-7', fingerprint256: runner.fingerprint256 });
    const read = await call('GET', '/v1/secrets/payments/db', { token: res.body.auth.client_token });
    expect(read.body.data.password).toBe('pw');
  });

  it('matches SPIFFE IDs in URI SANs', async () => {
    const res = await call('POST', '/v1/auth/cert/login', { body: { role: 'payments-api' }, client: spiffe });
    expect(res.status).toBe(200);
    expect(res.body.auth.identity).toBe('cert:payments-api:payments-api');
  });

  it('refuses a certificate the role does not allow with 403, naming the constraint', async () => {
    const res = await call('POST', '/v1/auth/cert/login', { body: { role: 'payments-api' }, client: runner });
    expect(res.status).toBe(403);
    expect(res.body.error.message).toContain('URI SAN');
  });

  it('refuses a look-alike certificate from another CA, and no certificate at all, with 401', async () => {
    for (const client of [stranger, undefined]) {
      const res = await call('POST', '/v1/auth/cert/login', { body: { role: 'runners' }, ...(client ? { client } : {}) });
      expect({ status: res.status, code: res.body.error.code }).toEqual({ status: 401, code: 'login_failed' });
    }
  });

  it('rejects a role without any constraint, and deleting a role revokes its tokens', async () => {
    const bad = await call('PUT', '/v1/auth/cert/roles/anyone', { token: root, body: { policies: ['payments-read'] } });
    expect(bad.status).toBe(400);
    const token = (await call('POST', '/v1/auth/cert/login', { body: { role: 'runners' }, client: runner })).body.auth.client_token;
    expect((await call('DELETE', '/v1/auth/cert/roles/runners', { token: root })).status).toBe(204);
    expect((await call('GET', '/v1/auth/token/lookup-self', { token })).status).toBe(401);
  });
});

function startTls(store: TestStore, cert: CertFiles, clientCa: CertFiles): Promise<RunningServer> {
  return startTestServer(store, { tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile, tlsClientCaFile: clientCa.certFile, loginRatePerSecond: 0 });
}
