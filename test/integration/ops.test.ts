// Operations on the real app: Prometheus metrics, health overrides and readiness, TLS with a
// reloadable certificate and client certificates, and request logs that leak nothing.
import { copyFileSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { Writable } from 'node:stream';
import express from 'express';
import { loadConfig, ConfigError } from '@coffer/server/config';
import { createLogger } from '@coffer/server/log';
import { startServer, type RunningServer } from '@coffer/server/server';
import { clientCertificate, clientCertificateOf } from '@coffer/server/http/client-cert';
import {
  api,
  createStore,
  describeEachStorage,
  expectError,
  initAndUnseal,
  startTestServer,
  unsealWith,
  type TestStore,
} from '../helpers/server.js';
import { freePort } from '../helpers/process.js';
import { CertDir, httpsRequest, type CertFiles } from '../helpers/tls.js';

/** Samples of one metric from the text exposition: labels → value. */
function samples(text: string, name: string): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples(text, name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describeEachStorage('metrics, health and readiness', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let token: string;
  let shares: string[];

  const scrape = async () => {
    const res = await api(base, 'GET', '/v1/sys/metrics', { token });
    expect(res.status).toBe(200);
    return res.text;
  };

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { dbPoolSize: 2 });
    base = server.url;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  describe('before init', () => {
    it('health is 501 by default, and takes Vault-style overrides', async () => {
      const res = await api(base, 'GET', '/v1/sys/health');
      expect(res.status).toBe(501);
      expect(res.body).toMatchObject({ initialized: false, sealed: true, standby: false });
      expect(typeof res.body.server_time_utc).toBe('number');
      expect((await api(base, 'GET', '/v1/sys/health?uninitcode=200')).status).toBe(200);
      // sealedcode does not apply to an uninitialised server
      expect((await api(base, 'GET', '/v1/sys/health?sealedcode=200')).status).toBe(501);
    });

    it('is not ready, and says why', async () => {
      const res = await api(base, 'GET', '/v1/sys/ready');
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ ready: false, checks: { database: 'ok', initialized: false, sealed: true } });
    });
  });

  describe('sealed', () => {
    beforeAll(async () => {
      const init = await api(base, 'POST', '/v1/sys/init', { body: { shares: 3, threshold: 2 } });
      token = init.body.root_token;
      shares = init.body.shares;
    });

    it('health is 503, or what sealedcode says', async () => {
      expect((await api(base, 'GET', '/v1/sys/health')).status).toBe(503);
      const res = await api(base, 'GET', '/v1/sys/health?sealedcode=200&uninitcode=500');
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ initialized: true, sealed: true, standby: false });
    });

    it('readiness is 503 with the seal named', async () => {
      const res = await api(base, 'GET', '/v1/sys/ready');
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ ready: false, checks: { database: 'ok', initialized: true, sealed: true } });
    });

    it('the authenticated metrics endpoint is sealed like every token endpoint', async () => {
      expectError(await api(base, 'GET', '/v1/sys/metrics', { token }), 503, 'sealed');
    });
  });

  describe('unsealed', () => {
    beforeAll(async () => {
      await unsealWith(base, shares.slice(0, 2));
    });

    it('health is 200, or what activecode says; standbyok is accepted', async () => {
      expect((await api(base, 'GET', '/v1/sys/health')).status).toBe(200);
      expect((await api(base, 'GET', '/v1/sys/health?activecode=299')).status).toBe(299);
      expect((await api(base, 'GET', '/v1/sys/health?standbyok=true&perfstandbyok')).status).toBe(200);
      expect((await api(base, 'GET', '/v1/sys/health?sealedcode=500')).status).toBe(200);
    });

    it.each(['sealedcode=abc', 'sealedcode=99', 'sealedcode=600', 'sealedcode=100', 'uninitcode=2000', 'uninitcode=-1', 'sealedcode=', 'standbyok=maybe', 'nope=1', 'sealedcode=200&sealedcode=201'])(
      'health refuses ?%s with 400',
      async (q) => {
        expectError(await api(base, 'GET', `/v1/sys/health?${q}`), 400, 'invalid_request');
      },
    );

    it('is ready', async () => {
      const res = await api(base, 'GET', '/v1/sys/ready');
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ ready: true, checks: { database: 'ok', initialized: true, sealed: false } });
    });

    it('metrics need a token with admin rights', async () => {
      expectError(await api(base, 'GET', '/v1/sys/metrics'), 401, 'unauthenticated');
      expectError(await api(base, 'GET', '/v1/sys/metrics', { token: 'not-a-token' }), 401, 'unauthenticated');
      const res = await api(base, 'GET', '/v1/sys/metrics', { token });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    });

    it('count requests by method, route template and status, never by namespace or path', async () => {
      expect((await api(base, 'POST', '/v1/namespaces', { token, body: { name: 'acme-payroll' } })).status).toBe(201);
      for (let i = 0; i < 3; i++) {
        const w = await api(base, 'PUT', '/v1/secrets/acme-payroll/hr/salaries', { token, body: { data: { ceo: String(i) } } });
        expect(w.status).toBe(200);
      }
      expect((await api(base, 'GET', '/v1/secrets/acme-payroll/hr/salaries?version=2', { token })).status).toBe(200);
      expect((await api(base, 'GET', '/v1/secrets/acme-payroll/hr/salaries', { token })).status).toBe(200);
      expect((await api(base, 'GET', '/v1/secrets/acme-payroll/hr/salaries:versions', { token })).status).toBe(200);
      expect((await api(base, 'GET', '/v1/secrets/acme-payroll/hr/missing', { token })).status).toBe(404);
      expect((await api(base, 'GET', '/v1/bulk/acme-payroll/hr/', { token })).status).toBe(200);
      expect((await api(base, 'GET', '/v1/namespaces/acme-payroll', { token })).status).toBe(200);
      expect((await api(base, 'GET', '/v1/acme-payroll-scan')).status).toBe(404);

      const text = await scrape();
      const count = (method: string, route: string, status: string) => metric(text, 'coffer_http_requests_total', { method, route, status });
      expect(count('PUT', '/v1/secrets/:ns/:path', '200')).toBe(3);
      expect(count('GET', '/v1/secrets/:ns/:path', '200')).toBe(2);
      expect(count('GET', '/v1/secrets/:ns/:path', '404')).toBe(1);
      expect(count('GET', '/v1/secrets/:ns/:path:versions', '200')).toBe(1);
      expect(count('GET', '/v1/bulk/:ns/:folder', '200')).toBe(1);
      expect(count('POST', '/v1/namespaces', '201')).toBe(1);
      expect(count('GET', '/v1/namespaces/:name', '200')).toBe(1);
      expect(count('GET', 'unmatched', '404')).toBe(1);
      expect(count('GET', '/v1/sys/metrics', '401')).toBeGreaterThanOrEqual(2);
      expect(
        metric(text, 'coffer_http_request_duration_seconds_count', { method: 'PUT', route: '/v1/secrets/:ns/:path', status: '200' }),
      ).toBe(3);
      expect(metric(text, 'coffer_http_request_duration_seconds_bucket', { method: 'PUT', route: '/v1/secrets/:ns/:path', le: '+Inf' })).toBe(3);
      // No raw path, namespace, secret name or query string anywhere in the exposition.
      expect(text).not.toMatch(/acme|payroll|salaries|version=2\b/);
      for (const s of samples(text, 'coffer_http_requests_total')) expect(s.labels.route).toMatch(/^(\/v1\/[a-z:/*-]*|unmatched)$/);
    });

    it('report the seal state, the caches and the audit queue', async () => {
      // A read fills the secret cache, but the change-feed notice of the write before it may still
      // be on its way and empty that entry again (under load it often arrives after the read):
      // read until the cache holds an entry, as it does once the notice has passed.
      let text = await scrape();
      for (const deadline = Date.now() + 30_000; (metric(text, 'coffer_secret_read_cache_entries') ?? 0) < 1 && Date.now() < deadline; ) {
        expect((await api(base, 'GET', '/v1/secrets/acme-payroll/hr/salaries', { token })).status).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 100));
        text = await scrape();
      }
      expect(metric(text, 'coffer_initialized')).toBe(1);
      expect(metric(text, 'coffer_sealed')).toBe(0);
      expect(metric(text, 'coffer_kek_cache_entries')).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'coffer_kek_cache_hits_total')).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'coffer_kek_cache_misses_total')).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'coffer_secret_read_cache_entries')).toBeGreaterThanOrEqual(1);
      // The read that filled the entry kept its response body (COFFER_SECRET_CACHE_VALUE_BYTES, 16 MiB by default).
      expect(metric(text, 'coffer_secret_read_cache_value_bytes')).toBeGreaterThan(0);
      expect(metric(text, 'coffer_audit_queue_depth')).toBe(0);
      // Node.js process metrics come along.
      expect(metric(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
      expect(metric(text, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
    });

    it('keep KEK cache totals counting across seal and unseal', async () => {
      for (let i = 0; i < 3; i++) await api(base, 'GET', '/v1/secrets/acme-payroll/hr/salaries?version=1', { token });
      const before = await scrape();
      const hits = metric(before, 'coffer_kek_cache_hits_total')!;
      const misses = metric(before, 'coffer_kek_cache_misses_total')!;
      expect((await api(base, 'POST', '/v1/sys/seal', { token })).status).toBe(200);
      await unsealWith(base, shares.slice(1, 3));
      const after = await scrape();
      expect(metric(after, 'coffer_kek_cache_hits_total')).toBeGreaterThanOrEqual(hits);
      expect(metric(after, 'coffer_kek_cache_misses_total')).toBeGreaterThanOrEqual(misses);
      // The new keyring starts empty; the old keys were zeroed with it.
      expect(metric(after, 'coffer_kek_cache_entries')).toBe(0);
    });

    if (kind === 'postgres') {
      it('report PostgreSQL pool use', async () => {
        const text = await scrape();
        expect(metric(text, 'coffer_db_pool_max_connections')).toBe(2);
        expect(metric(text, 'coffer_db_pool_connections')).toBeGreaterThanOrEqual(1);
        expect(metric(text, 'coffer_db_pool_idle_connections')).toBeGreaterThanOrEqual(0);
        expect(metric(text, 'coffer_db_pool_waiting_requests')).toBe(0);
      });
    } else {
      it('have no pool metrics on PGlite (one in-process connection)', async () => {
        expect(await scrape()).not.toContain('coffer_db_pool_');
      });
    }

    it('readiness fails with database "timeout" while the database cannot answer within 1 s', async () => {
      // Hold every connection (PGlite has one; the pool here has two) in open transactions.
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const holders = Array.from({ length: kind === 'postgres' ? 2 : 1 }, () =>
        server.core.db.transaction().execute(async (trx) => {
          await trx.selectFrom('seal_config').select('id').execute();
          await gate;
        }),
      );
      try {
        const pending = api(base, 'GET', '/v1/sys/ready');
        if (kind === 'postgres') {
          // While it waits, the pool says so.
          let waiting = 0;
          for (let i = 0; i < 100 && waiting === 0; i++) {
            waiting = metric(await scrape(), 'coffer_db_pool_waiting_requests') ?? 0;
            if (waiting === 0) await new Promise((r) => setTimeout(r, 10));
          }
          expect(waiting).toBeGreaterThanOrEqual(1);
        }
        const res = await pending;
        expect(res.status).toBe(503);
        expect(res.body).toMatchObject({ ready: false, checks: { database: 'timeout', initialized: true, sealed: false } });
      } finally {
        release();
        await Promise.all(holders);
      }
      expect((await api(base, 'GET', '/v1/sys/ready')).status).toBe(200);
    });
  });
});

describeEachStorage('the separate metrics listener', (kind) => {
  let store: TestStore;
  let server: RunningServer;

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { metricsListen: `127.0.0.1:${await freePort()}` });
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('serves /v1/sys/metrics without a token, also while uninitialised and sealed', async () => {
    expect(server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    let res = await api(server.metricsUrl!, 'GET', '/v1/sys/metrics');
    expect(res.status).toBe(200);
    expect(metric(res.text, 'coffer_initialized')).toBe(0);
    expect(metric(res.text, 'coffer_sealed')).toBe(1);
    const { shares } = await initAndUnseal(server.url, 1, 1);
    expect(shares).toHaveLength(1);
    res = await api(server.metricsUrl!, 'GET', '/v1/sys/metrics?ignored=1');
    expect(metric(res.text, 'coffer_initialized')).toBe(1);
    expect(metric(res.text, 'coffer_sealed')).toBe(0);
    expect(metric(res.text, 'coffer_http_requests_total', { method: 'POST', route: '/v1/sys/init', status: '200' })).toBe(1);
  });

  it('serves nothing else', async () => {
    for (const path of ['/', '/metrics', '/v1/sys/health', '/v1/secrets/x/y', '/v1/sys/metrics/']) {
      const res = await api(server.metricsUrl!, 'GET', path);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    const post = await api(server.metricsUrl!, 'POST', '/v1/sys/metrics', { body: {} });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('is not the API: the API still wants a token for metrics', async () => {
    expectError(await api(server.url, 'GET', '/v1/sys/metrics'), 401, 'unauthenticated');
  });
});

describe('TLS', () => {
  let certs: CertDir;
  let first: CertFiles;
  let second: CertFiles;
  let clientCa: CertFiles;
  let client: CertFiles;
  let stranger: CertFiles;
  let live: { certFile: string; keyFile: string };
  let store: TestStore;
  let server: RunningServer;

  beforeAll(async () => {
    certs = new CertDir();
    first = certs.server('first');
    second = certs.server('second');
    clientCa = certs.ca('client-ca');
    client = certs.client('ci-runner', '/CN=ci-runner/O=Acme Build', clientCa);
    const otherCa = certs.ca('other-ca');
    stranger = certs.client('stranger', '/CN=stranger', otherCa);
    // The files the server is configured with; tests overwrite them to "renew" the certificate.
    live = { certFile: `${certs.dir}/live.pem`, keyFile: `${certs.dir}/live-key.pem` };
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(first.keyFile, live.keyFile);
    store = await createStore('pglite');
    server = await startTestServer(store, {
      tlsCertFile: live.certFile,
      tlsKeyFile: live.keyFile,
      tlsClientCaFile: clientCa.certFile,
    });
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
    certs?.cleanup();
  });

  it('serves the API over HTTPS with the configured certificate', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await httpsRequest(`${server.url}/v1/sys/seal-status`, { ca: first.cert });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ initialized: false });
    expect(res.peerFingerprint256).toBe(first.fingerprint256);
  });

  it('does not speak plain HTTP on the TLS port', async () => {
    await expect(fetch(server.url.replace('https:', 'http:') + '/v1/sys/health')).rejects.toThrow();
  });

  it('does not require a client certificate, and accepts one from any CA without trusting it', async () => {
    expect((await httpsRequest(`${server.url}/v1/sys/health`, { ca: first.cert })).status).toBe(501);
    expect((await httpsRequest(`${server.url}/v1/sys/health`, { ca: first.cert, cert: client.cert, key: readKey(client) })).status).toBe(501);
    expect((await httpsRequest(`${server.url}/v1/sys/health`, { ca: first.cert, cert: stranger.cert, key: readKey(stranger) })).status).toBe(501);
  });

  it('reloads certificate and key without dropping the listener or open connections', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = await httpsRequest(`${server.url}/v1/sys/health`, { ca: first.cert, agent });
      expect(before.peerFingerprint256).toBe(first.fingerprint256);

      copyFileSync(second.certFile, live.certFile);
      copyFileSync(second.keyFile, live.keyFile);
      expect(server.reloadTls()).toBe(true);

      // The open connection keeps working (with the certificate it was opened with)...
      const reused = await httpsRequest(`${server.url}/v1/sys/health`, { ca: first.cert, agent });
      expect(reused.reusedSocket).toBe(true);
      expect(reused.status).toBe(501);
      // ...and new connections get the new certificate, on the same port.
      const fresh = await httpsRequest(`${server.url}/v1/sys/health`, { ca: second.cert });
      expect(fresh.peerFingerprint256).toBe(second.fingerprint256);
      await expect(httpsRequest(`${server.url}/v1/sys/health`, { ca: first.cert })).rejects.toThrow(/self[- ]signed|certificate/i);
    } finally {
      agent.destroy();
    }
  });

  it('keeps the current certificate when the new files are unusable', async () => {
    copyFileSync(first.certFile, live.certFile); // key is still the second one: mismatch
    expect(() => server.reloadTls()).toThrow(ConfigError);
    expect(() => server.reloadTls()).toThrow(/not usable/);
    const res = await httpsRequest(`${server.url}/v1/sys/health`, { ca: second.cert });
    expect(res.peerFingerprint256).toBe(second.fingerprint256);
    copyFileSync(second.certFile, live.certFile);
  });

  it('refuses to start with a key that does not match the certificate, naming the files only', async () => {
    const config = loadConfig({}, { port: 0, host: '127.0.0.1', logLevel: 'silent', dev: true, tlsCertFile: first.certFile, tlsKeyFile: second.keyFile });
    const err = await startServer(config, createLogger('silent')).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(first.certFile);
    expect((err as Error).message).not.toContain('PRIVATE KEY');
  });

  it('refuses to start with a missing certificate file', async () => {
    const config = loadConfig({}, { port: 0, host: '127.0.0.1', logLevel: 'silent', dev: true, tlsCertFile: `${certs.dir}/nope.pem`, tlsKeyFile: first.keyFile });
    await expect(startServer(config, createLogger('silent'))).rejects.toThrow(/cannot read the TLS certificate .*nope\.pem: ENOENT/);
  });

  describe('client certificates in the app', () => {
    // The app exposes a verified client certificate as res.locals.clientCertificate for a later
    // machine-identity login; nothing reads it yet, so this checks the middleware on its own listener.
    let echo: https.Server;
    let url: string;
    beforeAll(async () => {
      const app = express();
      app.use(clientCertificate);
      app.get('/whoami', (_req, res) => {
        res.json({ certificate: clientCertificateOf(res) ?? null });
      });
      echo = https.createServer({ cert: first.cert, key: readKey(first), ca: clientCa.cert, requestCert: true, rejectUnauthorized: false }, app);
      await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
      url = `https://127.0.0.1:${(echo.address() as { port: number }).port}/whoami`;
    });
    afterAll(async () => {
      echo.closeAllConnections();
      await new Promise((r) => echo.close(r));
    });

    it('exposes the subject of a certificate that chains to the client CA', async () => {
      const res = await httpsRequest(url, { ca: first.cert, cert: client.cert, key: readKey(client) });
      expect(res.body.certificate).toMatchObject({
        subject: { CN: 'ci-runner', O: 'Acme Build' },
        issuer: { CN: 'client-ca' },
        fingerprint256: client.fingerprint256,
      });
    });

    it('exposes nothing without a certificate or with one from another CA', async () => {
      expect((await httpsRequest(url, { ca: first.cert })).body.certificate).toBeNull();
      expect((await httpsRequest(url, { ca: first.cert, cert: stranger.cert, key: readKey(stranger) })).body.certificate).toBeNull();
    });
  });
});

function readKey(files: CertFiles): string {
  return readFileSync(files.keyFile, 'utf8');
}

describe('request logs', () => {
  const SECRET_VALUE = 'hunter2-correct-horse-battery-staple';
  const NAMESPACE = 'payroll-zeta';
  const PATH = 'db/very-private-name';

  async function flow(requestLog: boolean): Promise<{ log: string; token: string; shares: string[] }> {
    const chunks: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString());
        done();
      },
    });
    const store = await createStore('pglite');
    const config = loadConfig({}, { port: 0, host: '127.0.0.1', logLevel: 'info', requestLog, ...store.config });
    const server = await startServer(config, createLogger('info', sink));
    const base = server.url;
    try {
      const init = await api(base, 'POST', '/v1/sys/init', { body: { shares: 3, threshold: 2 } });
      const token = init.body.root_token as string;
      const shares = init.body.shares as string[];
      for (const share of shares.slice(0, 2)) await api(base, 'POST', '/v1/sys/unseal', { body: { share } });
      await api(base, 'POST', '/v1/namespaces', { token, body: { name: NAMESPACE } });
      await api(base, 'PUT', `/v1/secrets/${NAMESPACE}/${PATH}`, { token, body: { type: 'password', data: { password: SECRET_VALUE } } });
      await api(base, 'GET', `/v1/secrets/${NAMESPACE}/${PATH}?version=1`, { token });
      await api(base, 'GET', `/v1/secrets/${NAMESPACE}/${PATH}`, { headers: { 'x-coffer-token': token } });
      await api(base, 'GET', `/v1/bulk/${NAMESPACE}/db/`, { token });
      await api(base, 'GET', `/v1/secrets/${NAMESPACE}/db/?recursive=true`, { token });
      // Failures: a malformed body carrying the secret, a bad token, a wrong share, a bad query.
      await api(base, 'PUT', `/v1/secrets/${NAMESPACE}/${PATH}`, { token, rawBody: `{"data":{"password":"${SECRET_VALUE}"` });
      await api(base, 'GET', `/v1/secrets/${NAMESPACE}/${PATH}`, { token: `${token}x` });
      await api(base, 'GET', `/v1/secrets/${NAMESPACE}/${PATH}?password=${SECRET_VALUE}`, { token });
      await api(base, 'POST', '/v1/sys/seal', { token });
      await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[0] } });
      await api(base, 'POST', '/v1/sys/unseal', { body: { share: Buffer.from('x'.repeat(33)).toString('base64') } });
      return { log: chunks.join(''), token, shares };
    } finally {
      await server.stop();
      await store.cleanup();
    }
  }

  it('with COFFER_REQUEST_LOG on, logs every request with id, method, route template, status and duration, and nothing secret', async () => {
    const { log, token, shares } = await flow(true);
    const lines = log.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests.length).toBeGreaterThanOrEqual(14);
    for (const r of requests) {
      expect(r.level).toBe(30);
      expect(Object.keys(r).sort()).toEqual(['level', 'method', 'ms', 'msg', 'requestId', 'route', 'service', 'status', 'time']);
      expect(r.requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(typeof r.ms).toBe('number');
    }
    expect(requests).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ method: 'PUT', route: '/v1/secrets/:ns/:path', status: 200 }),
        expect.objectContaining({ method: 'PUT', route: '/v1/secrets/:ns/:path', status: 400 }),
        expect.objectContaining({ method: 'GET', route: '/v1/secrets/:ns/:path', status: 401 }),
        expect.objectContaining({ method: 'GET', route: '/v1/bulk/:ns/:folder', status: 200 }),
        expect.objectContaining({ method: 'POST', route: '/v1/sys/unseal', status: 400 }),
      ]),
    );
    // Nothing secret, and no name or query string, anywhere in the log.
    const forbidden = [SECRET_VALUE, token, token.split('.')[2]!, ...shares, NAMESPACE, 'very-private-name', 'version=1', 'recursive'];
    for (const f of forbidden) expect(log).not.toContain(f);
  });

  it('with COFFER_REQUEST_LOG off (the default), logs no request at info', async () => {
    const { log } = await flow(false);
    const lines = log.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.msg === 'request')).toEqual([]);
    expect(lines.some((l) => l.msg === 'request' || String(l.msg).includes(SECRET_VALUE))).toBe(false);
  });
});
