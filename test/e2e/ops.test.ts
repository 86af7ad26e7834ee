// Operations on the real `coffer-server` process: no acknowledged write lost when SIGTERM
// arrives under load (PGlite and PostgreSQL), the shutdown deadline, TLS with SIGHUP reload,
// the metrics listener, and the start-up refusal of plain HTTP off loopback.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, initAndUnseal, unsealWith } from '../helpers/server.js';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';
import { START_TIMEOUT_MS, freePort, runServerCommand, startServerProcess, type ServerProcess } from '../helpers/process.js';
import { CertDir, httpsRequest, type CertFiles } from '../helpers/tls.js';

const running: ServerProcess[] = [];
async function start(env: Record<string, string>) {
  const p = await startServerProcess(env);
  running.push(p);
  return p;
}
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value (not undefined) or `what` times out (sized for a loaded 2-core machine). */
async function eventually<T>(what: string, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function shutdownUnderLoad(storageEnv: () => Record<string, string>) {
  it('SIGTERM under a concurrent write load: every acknowledged write is there after a restart', async () => {
    const LOOPS = 16;
    const env = { ...storageEnv(), COFFER_SHUTDOWN_TIMEOUT_SECONDS: '20' };
    const first = await start(env);
    const { token, shares } = await initAndUnseal(first.url, 3, 2);
    expect((await api(first.url, 'POST', '/v1/namespaces', { token, body: { name: 'load' } })).status).toBe(201);

    // One secret per loop; each loop records the versions the server acknowledged with 200.
    const acked: Array<Array<{ version: number; value: string }>> = Array.from({ length: LOOPS }, () => []);
    const unexpected: string[] = [];
    let stop = false;
    const loops = Array.from({ length: LOOPS }, async (_, i) => {
      for (let n = 0; !stop; n++) {
        const value = `loop-${i}-write-${n}`;
        let res: Response;
        try {
          res = await fetch(`${first.url}/v1/secrets/load/loop-${i}`, {
            method: 'PUT',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ data: { value }, max_versions: 1000 }),
          });
        } catch {
          return; // connection refused or closed: the server is going away
        }
        const body = (await res.json().catch(() => null)) as { version?: number } | null;
        if (res.status === 200 && typeof body?.version === 'number') acked[i]!.push({ version: body.version, value });
        else unexpected.push(`${res.status} ${JSON.stringify(body)}`);
      }
    });

    const total = () => acked.reduce((n, a) => n + a.length, 0);
    await sleep(750);
    await eventually('an acknowledged write in every loop', () => (acked.every((a) => a.length > 0) ? true : undefined));
    const ackedBeforeSignal = total();
    first.child.kill('SIGTERM');
    const fallback = setTimeout(() => (stop = true), 30_000);
    await Promise.all(loops);
    clearTimeout(fallback);
    expect(await first.exited).toBe(0);
    expect(first.output()).toContain('shutting down');
    // Nothing was answered with an error while draining: requests either completed or never got in.
    expect(unexpected).toEqual([]);
    // Requests in flight when the signal came were finished, not dropped.
    expect(total()).toBeGreaterThan(ackedBeforeSignal);

    const second = await start(storageEnv());
    await unsealWith(second.url, shares.slice(1, 3));
    for (let i = 0; i < LOOPS; i++) {
      const history = await api(second.url, 'GET', `/v1/secrets/load/loop-${i}:versions`, { token });
      expect(history.status).toBe(200);
      const kept = new Set((history.body.versions as Array<{ version: number }>).map((v) => v.version));
      const missing = acked[i]!.filter((a) => !kept.has(a.version)).map((a) => a.version);
      expect({ loop: i, missing }).toEqual({ loop: i, missing: [] });
      const reads = await Promise.all(
        acked[i]!.map((a) => api(second.url, 'GET', `/v1/secrets/load/loop-${i}?version=${a.version}`, { token })),
      );
      expect(reads.map((r) => [r.status, r.body?.data?.value])).toEqual(acked[i]!.map((a) => [200, a.value]));
    }
    expect(await second.stop()).toBe(0);
  });
}

describe('graceful shutdown on PGlite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-ops-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  shutdownUnderLoad(() => ({ COFFER_DATA_DIR: dir }));
});

describeIfPostgres('graceful shutdown on PostgreSQL', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });
  shutdownUnderLoad(() => ({ COFFER_DATABASE_URL: database.url }));
});

describe('shutdown deadline', () => {
  it('cuts requests still in flight at COFFER_SHUTDOWN_TIMEOUT_SECONDS and exits cleanly', async () => {
    const p = await start({ COFFER_DEV: 'true', COFFER_SHUTDOWN_TIMEOUT_SECONDS: '1' });
    // A request whose body never finishes arriving stays in flight until the deadline.
    const { port } = new URL(p.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    socket.write('PUT /v1/secrets/x/y HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"data":');
    await sleep(100);
    p.child.kill('SIGTERM');
    await closed;
    expect(await p.exited).toBe(0);
  });
});

describe('TLS on the real process', () => {
  let certs: CertDir;
  let first: CertFiles;
  let second: CertFiles;

  beforeAll(() => {
    certs = new CertDir();
    first = certs.server('first');
    second = certs.server('second');
  });
  afterAll(() => certs?.cleanup());

  /** Starts coffer-server with TLS and returns it once it logged its https URL. */
  async function startTls(env: Record<string, string>) {
    const port = await freePort();
    const run = runServerCommand([], { COFFER_HOST: '127.0.0.1', COFFER_PORT: String(port), COFFER_DEV: 'true', ...env });
    const proc = {
      ...run,
      url: `https://127.0.0.1:${port}`,
      async stop(signal: NodeJS.Signals = 'SIGTERM') {
        if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill(signal);
        return run.exited;
      },
    };
    running.push(proc);
    await eventually('coffer-server to listen', () => {
      if (run.child.exitCode !== null) throw new Error(`coffer-server exited:\n${run.output()}`);
      return run.output().includes('"msg":"coffer listening"') ? true : undefined;
    });
    return proc;
  }

  it('serves HTTPS, reloads the certificate on SIGHUP without restarting, and survives a bad reload', async () => {
    const live = { cert: join(certs.dir, 'live.pem'), key: join(certs.dir, 'live-key.pem') };
    copyFileSync(first.certFile, live.cert);
    copyFileSync(first.keyFile, live.key);
    const p = await startTls({ COFFER_TLS_CERT_FILE: live.cert, COFFER_TLS_KEY_FILE: live.key, COFFER_REQUEST_LOG: 'true' });
    expect(p.output()).toContain(`"url":"${p.url}"`);
    const before = await httpsRequest(`${p.url}/v1/sys/health`, { ca: first.cert });
    expect(before).toMatchObject({ status: 200, peerFingerprint256: first.fingerprint256 });

    copyFileSync(second.certFile, live.cert);
    copyFileSync(second.keyFile, live.key);
    p.child.kill('SIGHUP');
    await eventually('the reload to be logged', () => (p.output().includes('TLS certificate and key reloaded') ? true : undefined));
    const after = await httpsRequest(`${p.url}/v1/sys/health`, { ca: second.cert });
    expect(after).toMatchObject({ status: 200, peerFingerprint256: second.fingerprint256 });

    // A broken pair is refused; the server keeps its certificate and keeps running.
    copyFileSync(first.certFile, live.cert);
    p.child.kill('SIGHUP');
    await eventually('the failed reload to be logged', () => (p.output().includes('TLS reload failed') ? true : undefined));
    expect((await httpsRequest(`${p.url}/v1/sys/health`, { ca: second.cert })).peerFingerprint256).toBe(second.fingerprint256);
    expect(p.output()).not.toContain('PRIVATE KEY');

    // COFFER_REQUEST_LOG=true: one info line per request, with the route template.
    expect(p.output()).toMatch(/"level":30,[^\n]*"method":"GET","route":"\/v1\/sys\/health","status":200,"ms":[0-9.]+,"msg":"request"/);
    expect(await p.stop()).toBe(0);
  });

  it('exits with status 2 when the certificate cannot be read', async () => {
    const run = runServerCommand([], {
      COFFER_HOST: '127.0.0.1',
      COFFER_PORT: '0',
      COFFER_DEV: 'true',
      COFFER_TLS_CERT_FILE: join(certs.dir, 'missing.pem'),
      COFFER_TLS_KEY_FILE: first.keyFile,
    });
    expect(await run.exited).toBe(2);
    expect(run.output()).toMatch(/cannot read the TLS certificate .*missing\.pem/);
  });
});

describe('start-up checks', () => {
  it('refuses plain HTTP on a non-loopback address (exit 2) before binding anything', async () => {
    const run = runServerCommand([], { COFFER_HOST: '0.0.0.0', COFFER_PORT: '0', COFFER_DEV: 'true' });
    expect(await run.exited).toBe(2);
    expect(run.output()).toMatch(/refusing to serve plain HTTP on the non-loopback address 0\.0\.0\.0/);
    expect(run.output()).toContain('COFFER_ALLOW_INSECURE_HTTP=true');
    expect(run.output()).not.toContain('coffer listening');
  });

  it('serves metrics on COFFER_METRICS_LISTEN without a token', async () => {
    const metricsPort = await freePort();
    const p = await start({ COFFER_DEV: 'true', COFFER_METRICS_LISTEN: `127.0.0.1:${metricsPort}` });
    // Dev mode initialises and unseals right after it starts listening.
    const res = await eventually('dev mode to unseal', async () => {
      const r = await api(`http://127.0.0.1:${metricsPort}`, 'GET', '/v1/sys/metrics');
      expect(r.status).toBe(200);
      return /^coffer_sealed 0$/m.test(r.text) ? r : undefined;
    });
    expect(res.text).toMatch(/^coffer_initialized 1$/m);
    expect((await api(p.url, 'GET', '/v1/sys/metrics')).status).toBe(401);
    expect(await p.stop()).toBe(0);
  });
});
