// Shamir root rotation against kill -9 of the real server process, on PGlite and PostgreSQL:
// killed during the verify step (the rewrap), the server comes back with either the old root
// (old shares unseal, the rotation is still pending and can be verified) or the new one (only the
// new shares unseal); every secret reads either way.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase } from '../helpers/env.js';
import { api, initAndUnseal, storageKinds } from '../helpers/server.js';
import { startServerProcess, type ServerProcess } from '../helpers/process.js';

const running: ServerProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
  for (const c of cleanups) await c();
});

async function unsealWithEither(url: string, oldShares: string[], newShares: string[]): Promise<'old' | 'new'> {
  for (const [which, shares] of [['old', oldShares], ['new', newShares]] as const) {
    await api(url, 'POST', '/v1/sys/unseal', { body: { reset: true } });
    let last;
    for (const share of shares) last = await api(url, 'POST', '/v1/sys/unseal', { body: { share } });
    if (last?.status === 200 && last.body.sealed === false) return which;
  }
  throw new Error('neither the old nor the new shares unseal');
}

for (const kind of storageKinds()) {
  describe(`Shamir root rotation survives kill -9 [${kind}]`, () => {
    it('leaves the old root (rotation still pending) or the new one in effect, never neither', async () => {
      const env: Record<string, string> = {};
      if (kind === 'postgres') {
        const db = await createTestDatabase();
        cleanups.push(() => db.drop());
        env.COFFER_DATABASE_URL = db.url;
      } else {
        const dir = mkdtempSync(join(tmpdir(), 'coffer-rekey-crash-'));
        cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
        env.COFFER_DATA_DIR = dir;
      }
      let server = await startServerProcess(env);
      running.push(server);
      const init = await initAndUnseal(server.url, 3, 2);
      const token = init.token;
      let shares = init.shares;
      const count = 120;
      for (let i = 0; i < count; i += 10) {
        await Promise.all(
          Array.from({ length: 10 }, async (_, j) => {
            await api(server.url, 'POST', '/v1/namespaces', { token, body: { name: `r-${i + j}` } });
            await api(server.url, 'PUT', `/v1/secrets/r-${i + j}/s`, { token, body: { data: { v: String(i + j) } } });
          }),
        );
      }
      const outcomes: string[] = [];
      for (const delayMs of [5, 30, 120]) {
        const pending = await api(server.url, 'POST', '/v1/sys/rotate-root', { token, body: { shares: shares.slice(0, 2) } });
        expect(pending.body.state).toBe('pending_verification');
        const newShares = pending.body.shares as string[];
        const verify = api(server.url, 'POST', '/v1/sys/rotate-root/verify', { token, body: { shares: newShares.slice(1, 3) } }).catch(() => null);
        await new Promise((r) => setTimeout(r, delayMs));
        server.child.kill('SIGKILL');
        const answered = await verify;
        await server.exited;
        server = await startServerProcess(env);
        running.push(server);
        const which = await unsealWithEither(server.url, shares.slice(0, 2), newShares.slice(0, 2));
        if (answered?.status === 200) expect(which).toBe('new');
        if (which === 'old') {
          // Still pending: verifying now completes it.
          const done = await api(server.url, 'POST', '/v1/sys/rotate-root/verify', { token, body: { shares: newShares.slice(0, 2) } });
          expect(done.body).toMatchObject({ state: 'completed' });
        }
        shares = newShares;
        outcomes.push(which);
        for (let i = 0; i < count; i += 20) {
          await Promise.all(
            Array.from({ length: 20 }, async (_, j) => {
              expect((await api(server.url, 'GET', `/v1/secrets/r-${i + j}/s`, { token })).body.data).toEqual({ v: String(i + j) });
            }),
          );
        }
      }
      process.stdout.write(`[rekey crash ${kind}] kill -9 during verify left: ${outcomes.join(', ')}\n`);
    });
  });
}
