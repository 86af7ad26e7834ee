// The real `coffer-server` process: restart persistence on both storages, clean shutdown,
// crash recovery, the PGlite data-dir lock, dev mode, migrate and config errors.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, initAndUnseal, unsealWith } from '../helpers/server.js';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';
import { freePort, runServerCommand, startServerProcess, type ServerProcess } from '../helpers/process.js';

const running: ServerProcess[] = [];
async function start(env: Record<string, string>, args: string[] = [], options?: Parameters<typeof startServerProcess>[2]) {
  const p = await startServerProcess(env, args, options);
  running.push(p);
  return p;
}
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
});

function persistenceSuite(storageEnv: () => Record<string, string>) {
  let token: string;
  let shares: string[];

  it('keeps namespaces, secrets, versions and tokens across a clean restart', async () => {
    const first = await start(storageEnv());
    ({ token, shares } = await initAndUnseal(first.url, 3, 2));
    expect((await api(first.url, 'POST', '/v1/namespaces', { token, body: { name: 'payments-prod' } })).status).toBe(201);
    for (const v of ['one', 'two', 'three']) {
      const w = await api(first.url, 'PUT', '/v1/secrets/payments-prod/db/password', { token, body: { type: 'password', data: { password: v } } });
      expect(w.status).toBe(200);
    }
    await api(first.url, 'POST', '/v1/secrets/payments-prod/db/password:delete', { token, body: { versions: [2] } });
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(first.output()).toContain('shutting down');

    const second = await start(storageEnv());
    expect((await api(second.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ initialized: true, sealed: true, threshold: 2 });
    expect((await api(second.url, 'GET', '/v1/secrets/payments-prod/db/password', { token })).status).toBe(503);
    await unsealWith(second.url, [shares[2]!, shares[1]!]);
    const latest = await api(second.url, 'GET', '/v1/secrets/payments-prod/db/password', { token });
    expect(latest.body).toMatchObject({ version: 3, data: { password: 'three' } });
    expect((await api(second.url, 'GET', '/v1/secrets/payments-prod/db/password?version=1', { token })).body.data.password).toBe('one');
    expect((await api(second.url, 'GET', '/v1/secrets/payments-prod/db/password?version=2', { token })).status).toBe(404);
    await second.stop();
  });

  it('loses no acknowledged write when killed with SIGKILL', async () => {
    const p = await start(storageEnv());
    await unsealWith(p.url, shares.slice(0, 2));
    const w = await api(p.url, 'PUT', '/v1/secrets/payments-prod/after-crash', { token, body: { data: { v: 'committed' } } });
    expect(w.status).toBe(200);
    expect(await p.stop('SIGKILL')).toBe('SIGKILL');
    const again = await start(storageEnv());
    await unsealWith(again.url, shares.slice(0, 2));
    expect((await api(again.url, 'GET', '/v1/secrets/payments-prod/after-crash', { token })).body.data.v).toBe('committed');
    await again.stop();
  });
}

describe('coffer-server on PGlite (embedded default)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-e2e-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  persistenceSuite(() => ({ COFFER_DATA_DIR: dir }));

  it('refuses to open a data directory another server holds', async () => {
    const holder = await start({ COFFER_DATA_DIR: dir });
    const intruder = runServerCommand([], { COFFER_DATA_DIR: dir, COFFER_HOST: '127.0.0.1', COFFER_PORT: '0' });
    expect(await intruder.exited).toBe(1);
    expect(intruder.output()).toMatch(/in use by another Coffer server \(pid \d+\)/);
    // The holder is unaffected.
    expect((await api(holder.url, 'GET', '/v1/sys/seal-status')).body.initialized).toBe(true);
    await holder.stop();
  });
});

describeIfPostgres('coffer-server on PostgreSQL', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });
  persistenceSuite(() => ({ COFFER_DATABASE_URL: database.url }));

  it('migrate brings the schema up to date and exits', async () => {
    const run = runServerCommand(['migrate'], { COFFER_DATABASE_URL: database.url });
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('schema is up to date');
    expect(run.output()).not.toContain(new URL(database.url).password || '\u0000');
  });
});

describe('coffer-server modes and errors', () => {
  it('a start whose port another server took first retries on another port, instead of taking that server for its own', async () => {
    // freePort's race on a busy machine: an initialised server binds the chosen port first.
    const port = await freePort();
    const impostor = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"initialized":true,"sealed":false}'));
    await new Promise<void>((resolve) => impostor.listen(port, '127.0.0.1', resolve));
    const dir = mkdtempSync(join(tmpdir(), 'coffer-e2e-port-'));
    try {
      let chosen = 0;
      const p = await start({ COFFER_DATA_DIR: dir }, [], { choosePort: async () => (chosen++ === 0 ? port : freePort()) });
      expect(chosen).toBe(2);
      expect(p.url).not.toBe(`http://127.0.0.1:${port}`);
      // Ours: a fresh server, not the impostor.
      expect((await api(p.url, 'GET', '/v1/sys/seal-status')).body.initialized).toBe(false);
      await p.stop();
      // A port the caller chose is not changed behind its back: the start fails.
      await expect(startServerProcess({ COFFER_PORT: String(port), COFFER_DATA_DIR: dir })).rejects.toThrow(/exited during start-up[\s\S]*EADDRINUSE/);
    } finally {
      await new Promise((resolve) => impostor.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--dev starts initialised and unsealed, and prints a working root token', async () => {
    const p = await start({}, ['--dev']);
    const tokenLine = p.output().match(/COFFER_TOKEN=(\S+)/);
    expect(tokenLine).not.toBeNull();
    expect((await api(p.url, 'GET', '/v1/sys/health')).status).toBe(200);
    const created = await api(p.url, 'POST', '/v1/namespaces', { token: tokenLine![1]!, body: { name: 'dev' } });
    expect(created.status).toBe(201);
    expect(await p.stop()).toBe(0);
  });

  it('exits with status 2 and a clear message on invalid configuration', async () => {
    const run = runServerCommand([], { COFFER_PORT: 'eighty' });
    expect(await run.exited).toBe(2);
    expect(run.output()).toMatch(/invalid configuration: port/);
  });

  it('exits with status 2 on an unknown command or flag', async () => {
    expect(await runServerCommand(['frobnicate'], {}).exited).toBe(2);
    expect(await runServerCommand(['--nope'], {}).exited).toBe(2);
  });

  it('prints usage with --help', async () => {
    const run = runServerCommand(['--help'], {});
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('usage: coffer-server');
  });
});
