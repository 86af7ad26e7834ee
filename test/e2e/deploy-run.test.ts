// The shipped deployment files driving real processes: the systemd unit's ExecStart (with its
// Environment= and UMask=) starts a server that answers the probes the chart and compose use,
// and the shipped haproxy.cfg, pointed at that server and two dead ones, sends traffic only once
// the server is ready, answering 503 with Retry-After before. No systemd or container engine runs
// here; this is what can run without them.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnCaptured, stopProcess, waitForHttp } from '#lib/child.mjs';
import { freePort } from '#lib/port.mjs';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const UNIT = readFileSync(path.join(ROOT, 'deploy/systemd/coffer.service'), 'utf8');
const directive = (key: string): string[] => [...UNIT.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);

async function get(url: string): Promise<{ status: number; body: string; retryAfter: string | null }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text(), retryAfter: res.headers.get('retry-after') };
}

async function post(url: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(30_000) });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Polls `fn` until it returns true (or `timeoutMs` passes); returns whether it did. */
async function until(fn: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/** Every file and directory under `dir`, with its mode. */
function modes(dir: string): Array<{ file: string; mode: number }> {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => ({ file: f, mode: statSync(path.join(dir, f)).mode & 0o777 }));
}

describe('deploy/systemd/coffer.service ExecStart and deploy/haproxy/haproxy.cfg, run', () => {
  let dir: string;
  let server: ReturnType<typeof spawnCaptured> | undefined;
  let haproxy: ReturnType<typeof spawnCaptured> | undefined;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'coffer-deploy-'));
    const dataDir = path.join(dir, 'var-lib-coffer');
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const [execStart] = directive('ExecStart');
    const exec = execStart!.replace('/opt/coffer/', ROOT.endsWith('/') ? ROOT : `${ROOT}/`);
    // The unit's environment, with the state directory (ReadWritePaths) moved to a temp dir.
    const env: Record<string, string> = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, COFFER_LOG_LEVEL: 'warn' };
    for (const e of directive('Environment')) {
      const [k, ...v] = e.split('=');
      env[k!] = v.join('=').replace('/var/lib/coffer', dataDir);
    }
    expect(env.COFFER_DATA_DIR).toBe(dataDir);
    Object.assign(env, { COFFER_HOST: '127.0.0.1', COFFER_PORT: String(port) });
    const [umask] = directive('UMask');
    // As systemd starts it: the launcher itself (executable, shebang), under the unit's umask.
    server = spawnCaptured('/bin/sh', ['-c', `umask ${umask} && exec "$0"`, exec], { env });
    const up = await waitForHttp(`${url}/v1/sys/health`, { timeoutMs: 60_000, intervalMs: 100, requestTimeoutMs: 0 });
    if (!('status' in up)) throw new Error(`the unit's ExecStart did not answer:\n${server.output()}`);
  }, 90_000);

  afterAll(async () => {
    if (haproxy) await stopProcess(haproxy.child, haproxy.exited, { graceMs: 5_000 });
    if (server) await stopProcess(server.child, server.exited, { graceMs: 15_000 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the probes: health 501 uninitialised, 200 as liveness, ready 503', async () => {
    expect((await get(`${url}/v1/sys/health`)).status).toBe(501);
    expect((await get(`${url}/v1/sys/health?sealedcode=200&uninitcode=200`)).status).toBe(200);
    expect((await get(`${url}/v1/sys/ready`)).status).toBe(503);
  });

  it('keeps its data private to its user under UMask=0077', () => {
    const files = modes(path.join(dir, 'var-lib-coffer'));
    expect(files.length).toBeGreaterThan(0);
    expect(files.filter((f) => (f.mode & 0o077) !== 0)).toEqual([]);
  });

  it('behind the shipped haproxy.cfg: 503 with Retry-After until ready, then served; dead servers get nothing', async () => {
    const [front, stats, dead1, dead2] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const serverPort = new URL(url).port;
    const cfg = readFileSync(path.join(ROOT, 'deploy/haproxy/haproxy.cfg'), 'utf8')
      .replace(/^(\s*)bind :8200$/m, `$1bind 127.0.0.1:${front}`)
      .replace(/^(\s*)bind :8404$/m, `$1bind 127.0.0.1:${stats}`)
      .replace(/^(\s*server coffer-1) coffer-1:8200$/m, `$1 127.0.0.1:${serverPort}`)
      .replace(/^(\s*server coffer-2) coffer-2:8200$/m, `$1 127.0.0.1:${dead1}`)
      .replace(/^(\s*server coffer-3) coffer-3:8200$/m, `$1 127.0.0.1:${dead2}`);
    expect(cfg).not.toMatch(/coffer-\d:8200|bind :/);
    const cfgFile = path.join(dir, 'haproxy.cfg');
    writeFileSync(cfgFile, cfg);
    haproxy = spawnCaptured('haproxy', ['-db', '-f', cfgFile], { env: { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } });
    const lb = `http://127.0.0.1:${front}`;
    expect(await until(async () => (await get(`${lb}/v1/sys/health`)).status > 0, 20_000)).toBe(true);

    // Nothing is ready (uninitialised, and two servers are dead): HAProxy's own 503, in Coffer's shape.
    const none = await get(`${lb}/v1/sys/health`);
    expect({ status: none.status, retryAfter: none.retryAfter, code: (JSON.parse(none.body) as { error: { code: string } }).error.code }).toEqual({
      status: 503,
      retryAfter: '1',
      code: 'unavailable',
    });

    const init = await post(`${url}/v1/sys/init`, { shares: 1, threshold: 1 });
    await post(`${url}/v1/sys/unseal`, { share: (init.shares as string[])[0] });
    expect((await get(`${url}/v1/sys/ready`)).status).toBe(200);
    // rise 2 x inter 2s: served through HAProxy within seconds, by the one live server.
    const served = await until(async () => (await get(`${lb}/v1/sys/health`)).status === 200, 30_000);
    expect({ served, haproxy: served ? '' : haproxy.output() }).toEqual({ served: true, haproxy: '' });
    for (let i = 0; i < 10; i++) expect((await get(`${lb}/v1/sys/seal-status`)).status).toBe(200);
  }, 90_000);

  it('stops on the unit\'s KillSignal within TimeoutStopSec, exit status 0', async () => {
    const [signal] = directive('KillSignal');
    const [timeout] = directive('TimeoutStopSec');
    const started = Date.now();
    server!.child.kill(signal as NodeJS.Signals);
    const { code } = (await server!.exited) as { code: number | null };
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(Number(timeout) * 1000);
  }, 60_000);
});
