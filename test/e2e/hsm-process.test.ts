// The real `coffer-server` process with the PKCS#11 seal (SoftHSM2): it unseals itself at start
// (after a clean stop and after kill -9), stays sealed with a clear log when the HSM is not there,
// and a kill -9 in the middle of a root rotation leaves the old or the new root fully in effect.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeIfSoftHsm, createTestDatabase, type TestDatabase } from '../helpers/env.js';
import { api, storageKinds } from '../helpers/server.js';
import { startServerProcess, type ServerProcess } from '../helpers/process.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

describeIfSoftHsm('coffer-server with the PKCS#11 seal', () => {
  let hsm: SoftHsm;
  const running: ServerProcess[] = [];
  const cleanups: Array<() => Promise<void> | void> = [];
  beforeAll(() => {
    hsm = createSoftHsm(storageKinds().flatMap((k) => [`e2e-${k}`, `crash-${k}`]));
  });
  afterAll(async () => {
    await Promise.all(running.map((p) => p.stop('SIGKILL')));
    for (const c of cleanups) await c();
    hsm?.cleanup();
  });
  const start = async (env: Record<string, string>) => {
    const p = await startServerProcess(env);
    running.push(p);
    return p;
  };

  for (const kind of storageKinds()) {
    describe(`[${kind}]`, () => {
      let storageEnv: Record<string, string>;
      beforeAll(async () => {
        if (kind === 'postgres') {
          const db: TestDatabase = await createTestDatabase();
          cleanups.push(() => db.drop());
          storageEnv = { COFFER_DATABASE_URL: db.url };
        } else {
          const dir = mkdtempSync(join(tmpdir(), 'coffer-hsm-e2e-'));
          cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
          storageEnv = { COFFER_DATA_DIR: dir };
        }
      });

      it('unseals itself at start, after a clean stop and after kill -9; an absent HSM leaves it sealed with a clear log', async () => {
        const env = { ...storageEnv, ...hsm.env(`e2e-${kind}`) };
        const first = await start(env);
        const init = await api(first.url, 'POST', '/v1/sys/init', { body: { recovery_shares: 3, recovery_threshold: 2 } });
        expect(init.status).toBe(200);
        const token = init.body.root_token as string;
        await api(first.url, 'POST', '/v1/namespaces', { token, body: { name: 'e2e' } });
        expect((await api(first.url, 'PUT', '/v1/secrets/e2e/db', { token, body: { data: { password: 'hsm' } } })).status).toBe(200);
        expect(await first.stop('SIGTERM')).toBe(0);

        const second = await start(env);
        expect((await api(second.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ sealed: false, seal_type: 'pkcs11', recovery_seal: true });
        expect(second.output()).toContain('unsealed by the HSM');
        await api(second.url, 'PUT', '/v1/secrets/e2e/db', { token, body: { data: { password: 'hsm2' } } });
        expect(await second.stop('SIGKILL')).toBe('SIGKILL');

        const third = await start(env);
        expect((await api(third.url, 'GET', '/v1/secrets/e2e/db', { token })).body.data).toEqual({ password: 'hsm2' });
        await third.stop('SIGTERM');

        // Token not there: the server runs, sealed, and says why; the PIN is in no log line.
        const absent = await start({ ...env, COFFER_PKCS11_TOKEN_LABEL: 'no-such-token' });
        const status = await api(absent.url, 'GET', '/v1/sys/seal-status');
        expect(status.body).toMatchObject({ initialized: true, sealed: true });
        expect((await api(absent.url, 'GET', '/v1/secrets/e2e/db', { token })).status).toBe(503);
        expect(absent.output()).toContain('automatic unseal with the HSM failed');
        expect(absent.output()).toContain('no token labelled');
        expect(absent.output()).not.toContain(hsm.pin);
        expect(await absent.stop('SIGTERM')).toBe(0);

        // Misconfiguration (seal=pkcs11 without a module) is refused at start-up with exit 2.
        const bad = await startServerProcess({ ...storageEnv, COFFER_SEAL: 'pkcs11' }).catch((err: Error) => err);
        expect(String(bad)).toContain('COFFER_PKCS11_MODULE');
      });

      it('kill -9 during a root rotation leaves the old or the new root in effect with every secret readable', async () => {
        const env: Record<string, string> = { ...hsm.env(`crash-${kind}`) };
        if (kind === 'postgres') {
          const db = await createTestDatabase();
          cleanups.push(() => db.drop());
          env.COFFER_DATABASE_URL = db.url;
        } else {
          const dir = mkdtempSync(join(tmpdir(), 'coffer-hsm-crash-'));
          cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
          env.COFFER_DATA_DIR = dir;
        }
        let server = await start(env);
        const token = (await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } })).body.root_token as string;
        const count = 120;
        for (let i = 0; i < count; i += 10) {
          await Promise.all(
            Array.from({ length: 10 }, async (_, j) => {
              const ns = `ns-${i + j}`;
              expect((await api(server.url, 'POST', '/v1/namespaces', { token, body: { name: ns } })).status).toBe(201);
              expect((await api(server.url, 'PUT', `/v1/secrets/${ns}/s`, { token, body: { data: { v: ns } } })).status).toBe(200);
            }),
          );
        }
        const seen: string[] = [];
        for (const delayMs of [5, 40, 150]) {
          const before = (await api(server.url, 'GET', '/v1/sys/seal-status')).body.root_version as number;
          const rotation = api(server.url, 'POST', '/v1/sys/rotate-root', { token, body: {} }).catch(() => null);
          await new Promise((r) => setTimeout(r, delayMs));
          server.child.kill('SIGKILL');
          const answered = await rotation;
          await server.exited;
          server = await start(env);
          const status = (await api(server.url, 'GET', '/v1/sys/seal-status')).body;
          expect(status.sealed).toBe(false);
          expect([before, before + 1]).toContain(status.root_version);
          if (answered?.status === 200) expect(status.root_version).toBe(before + 1);
          seen.push(status.root_version === before ? 'old' : 'new');
          for (let i = 0; i < count; i += 20) {
            await Promise.all(
              Array.from({ length: 20 }, async (_, j) => {
                const ns = `ns-${i + j}`;
                expect((await api(server.url, 'GET', `/v1/secrets/${ns}/s`, { token })).body.data).toEqual({ v: ns });
              }),
            );
          }
        }
        // Whatever was interrupted, a rotation now completes.
        const done = await api(server.url, 'POST', '/v1/sys/rotate-root', { token, body: {} });
        expect(done.status).toBe(200);
        expect(done.body.rewrapped.keks).toBe(count);
        expect((await api(server.url, 'GET', '/v1/secrets/ns-7/s', { token })).body.data).toEqual({ v: 'ns-7' });
        // Which side each kill landed on (both are correct outcomes); printed for the report.
        process.stdout.write(`[hsm e2e ${kind}] kill -9 during rotate-root left: ${seen.join(', ')}\n`);
      });
    });
  }
});
