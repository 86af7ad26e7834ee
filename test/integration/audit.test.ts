// The audit log: one entry per request, no secret in it (nor in the logs), searchable by
// HMAC, tamper-evident on the real databases, and fail-closed when it cannot write.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { sql } from 'kysely';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, unsealWith, type TestStore } from '../helpers/server.js';

const SECRET_VALUES = ['pw-6f1c2b8e-first', 'pw-6f1c2b8e-second', 'tok-91aa7e-value', 'meta-is-not-secret'];

describeEachStorage('audit log', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let token: string;
  let shares: string[];
  let logs = '';
  const db = () => server.storage.db;
  const count = async () => Number((await db().selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  const last = async () => JSON.parse((await db().selectFrom('audit_log').select('body').orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow()).body);
  const auth = () => ({ token });

  beforeAll(async () => {
    store = await createStore(kind);
    const logStream = new PassThrough();
    logStream.on('data', (chunk: Buffer) => (logs += chunk.toString()));
    server = await startTestServer(store, { auditCheckpointEvery: 10 }, logStream);
    base = server.url;
    ({ token, shares } = await initAndUnseal(base, 3, 2));
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('records exactly one entry per request, with the right action, for every route', async () => {
    const requests: Array<[string, string, unknown, string, number]> = [
      ['POST', '/v1/namespaces', { name: 'audited' }, 'namespace.create', 201],
      ['GET', '/v1/namespaces', undefined, 'namespace.list', 200],
      ['GET', '/v1/namespaces/audited', undefined, 'namespace.read', 200],
      ['PUT', '/v1/secrets/audited/db/password', { type: 'password', data: { password: SECRET_VALUES[0] }, metadata: { note: SECRET_VALUES[3] } }, 'secret.write', 200],
      ['POST', '/v1/secrets/audited/db/password', { type: 'password', data: { password: SECRET_VALUES[1] } }, 'secret.write', 200],
      ['PUT', '/v1/secrets/audited/api/token', { type: 'token', data: { token: SECRET_VALUES[2] } }, 'secret.write', 200],
      ['GET', '/v1/secrets/audited/db/password', undefined, 'secret.read', 200],
      ['GET', '/v1/secrets/audited/db/password?version=1', undefined, 'secret.read', 200],
      ['GET', '/v1/secrets/audited/db/', undefined, 'secret.list', 200],
      ['GET', '/v1/bulk/audited/', undefined, 'secret.bulk_read', 200],
      ['GET', '/v1/secrets/audited/db/password:versions', undefined, 'secret.history', 200],
      ['POST', '/v1/secrets/audited/db/password:rollback', { version: 1 }, 'secret.rollback', 200],
      ['DELETE', '/v1/secrets/audited/db/password', undefined, 'secret.delete', 200],
      ['POST', '/v1/secrets/audited/db/password:undelete', {}, 'secret.undelete', 200],
      ['POST', '/v1/secrets/audited/db/password:delete', { versions: [1] }, 'secret.delete', 200],
      ['POST', '/v1/secrets/audited/db/password:destroy', { versions: [1] }, 'secret.destroy', 200],
      ['POST', '/v1/secrets/audited/api/token:purge', undefined, 'secret.purge', 200],
      ['GET', '/v1/secrets/audited/nope', undefined, 'secret.read', 404],
      ['PUT', '/v1/secrets/audited/bad', { data: {} }, 'secret.write', 400],
      ['GET', '/v1/auth/token/lookup-self', undefined, 'auth.token.lookup-self', 200],
      ['GET', '/v1/sys/seal-status', undefined, 'sys.seal-status', 200],
      ['POST', '/v1/sys/init', { shares: 1, threshold: 1 }, 'sys.init', 409],
      ['GET', '/v1/sys/audit?limit=1', undefined, 'sys.audit', 200],
      ['GET', '/v1/sys/audit/verify', undefined, 'sys.audit.verify', 200],
      ['POST', '/v1/sys/audit/hash', { input: 'x' }, 'sys.audit.hash', 200],
      ['GET', '/v1/no-such-thing', undefined, 'unknown', 404],
      ['DELETE', '/v1/namespaces/audited?force=true', undefined, 'namespace.delete', 200],
    ];
    for (const [method, path, body, action, status] of requests) {
      const before = await count();
      const res = await api(base, method, path, { token, body });
      expect({ path, status: res.status }).toEqual({ path, status });
      expect(await count()).toBe(before + 1);
      const entry = await last();
      expect({ path, action: entry.action, status: entry.status, requestId: entry.request_id }).toEqual({
        path,
        action,
        status,
        requestId: res.headers.get('x-request-id'),
      });
      if (['sys.seal-status', 'sys.init', 'unknown'].includes(action)) {
        // Routes that take no token record no identity, even when one was sent.
        expect(entry.identity).toBeNull();
      } else {
        expect(entry.identity).toMatchObject({ id: 'root', method: 'token' });
        expect(entry.identity.accessor_hmac).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
      }
    }
    const noToken = await api(base, 'GET', '/v1/namespaces');
    expect(noToken.status).toBe(401);
    expect(await last()).toMatchObject({ action: 'namespace.list', outcome: 'denied', status: 401, identity: null, error_code: 'unauthenticated' });
  });

  it('does not audit load-balancer probes', async () => {
    const before = await count();
    await api(base, 'GET', '/v1/sys/health');
    expect(await count()).toBe(before);
  });

  it('never holds a secret value, token or share, in the audit log or the server log', async () => {
    const bodies = (await db().selectFrom('audit_log').select('body').execute()).map((r) => r.body).join('\n');
    expect(bodies.length).toBeGreaterThan(1000);
    for (const forbidden of [...SECRET_VALUES.slice(0, 3), token, ...shares, token.split('.')[2]!]) {
      expect(bodies).not.toContain(forbidden);
      expect(logs).not.toContain(forbidden);
    }
    expect(logs).toContain('"requestId"');
  });

  it('finds a value\'s writes through its HMAC, and the caller through its accessor\'s HMAC', async () => {
    const hash = await api(base, 'POST', '/v1/sys/audit/hash', { ...auth(), body: { input: SECRET_VALUES[1] } });
    expect(hash.body.hash).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    const writes = await api(base, 'GET', '/v1/sys/audit?action=secret.write&namespace=audited&limit=100', auth());
    const matching = writes.body.entries.filter((e: { hashed: Record<string, string> }) => e.hashed['data.password'] === hash.body.hash);
    expect(matching).toHaveLength(1);
    const self = await api(base, 'GET', '/v1/auth/token/lookup-self', auth());
    const accessorHash = await api(base, 'POST', '/v1/sys/audit/hash', { ...auth(), body: { input: self.body.accessor } });
    expect(matching[0].identity.accessor_hmac).toBe(accessorHash.body.hash);
  });

  it('searches with filters and paginates newest first or oldest first', async () => {
    const denied = await api(base, 'GET', '/v1/sys/audit?outcome=denied', auth());
    expect(denied.body.entries.length).toBeGreaterThan(0);
    expect(denied.body.entries.every((e: { outcome: string }) => e.outcome === 'denied')).toBe(true);
    const page1 = await api(base, 'GET', '/v1/sys/audit?namespace=audited&limit=5', auth());
    const page2 = await api(base, 'GET', `/v1/sys/audit?namespace=audited&limit=5&cursor=${page1.body.next_cursor}`, auth());
    const seqs = [...page1.body.entries, ...page2.body.entries].map((e: { seq: number }) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    expect(new Set(seqs).size).toBe(10);
    const asc = await api(base, 'GET', '/v1/sys/audit?order=asc&limit=3', auth());
    expect(asc.body.entries.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3]);
    const future = await api(base, 'GET', `/v1/sys/audit?since=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`, auth());
    expect(future.body.entries).toEqual([]);
    expectError(await api(base, 'GET', '/v1/sys/audit?outcome=maybe', auth()), 400, 'invalid_request');
    expectError(await api(base, 'GET', '/v1/sys/audit?limit=5000', auth()), 400, 'invalid_request');
    expectError(await api(base, 'GET', '/v1/sys/audit'), 401, 'unauthenticated');
  });

  describe('tamper evidence', () => {
    // Verified in-process: a verify over HTTP would itself append to the chain being tampered with.
    const verify = () => server.core.audit.verify();
    const row = (seq: number) => db().selectFrom('audit_log').selectAll().where('seq', '=', seq).executeTakeFirstOrThrow();

    it('verifies an intact chain with its signed checkpoints', async () => {
      const result = await verify();
      expect(result).toMatchObject({ ok: true, first_broken: null });
      expect(result.entries_checked).toBeGreaterThan(20);
      expect(result.checkpoints_checked).toBeGreaterThan(0);
    });

    it('detects an edited entry', async () => {
      const original = await row(5);
      const edited = original.body.replace(/"status":\d+/, '"status":200').replace(/"outcome":"\w+"/, '"outcome":"success"').replace('"root"', '"someone-else"');
      await db().updateTable('audit_log').set({ body: edited }).where('seq', '=', 5).execute();
      expect((await verify()).first_broken).toMatchObject({ seq: 5 });
      await db().updateTable('audit_log').set({ body: original.body }).where('seq', '=', 5).execute();
      expect((await verify()).ok).toBe(true);
    });

    it('detects a deleted entry', async () => {
      const original = await row(7);
      await db().deleteFrom('audit_log').where('seq', '=', 7).execute();
      const result = await verify();
      expect(result.ok).toBe(false);
      expect(result.first_broken).toMatchObject({ seq: 7 });
      await db().insertInto('audit_log').values(original).execute();
      expect((await verify()).ok).toBe(true);
    });

    it('detects reordered entries', async () => {
      const a = await row(9);
      const b = await row(10);
      // Swap the two rows' positions in the chain.
      await db().updateTable('audit_log').set({ seq: -1 }).where('seq', '=', 9).execute();
      await db().updateTable('audit_log').set({ seq: 9 }).where('seq', '=', 10).execute();
      await db().updateTable('audit_log').set({ seq: 10 }).where('seq', '=', -1).execute();
      expect((await verify()).first_broken).toMatchObject({ seq: 9 });
      await db().deleteFrom('audit_log').where('seq', 'in', [9, 10]).execute();
      await db().insertInto('audit_log').values([a, b]).execute();
      expect((await verify()).ok).toBe(true);
    });

    it('detects a re-hashed forgery through the signed checkpoints', async () => {
      // An attacker who rewrites an entry AND recomputes every later hash keeps the chain
      // consistent, but cannot re-sign the checkpoints.
      const rows = await db().selectFrom('audit_log').selectAll().orderBy('seq').execute();
      const { chainHash } = await import('@coffer/server/audit/chain');
      let prev = rows[2]!.hash;
      const forged = rows.slice(3).map((r, i) => {
        const body = i === 0 ? r.body.replace('"root"', '"mallory"') : r.body;
        const hash = chainHash(prev, body);
        const out = { ...r, body, prev_hash: prev, hash };
        prev = hash;
        return out;
      });
      for (const f of forged) await db().updateTable('audit_log').set({ body: f.body, prev_hash: f.prev_hash, hash: f.hash }).where('seq', '=', f.seq).execute();
      const result = await verify();
      expect(result.ok).toBe(false);
      expect(result.first_broken?.reason).toMatch(/checkpoint/);
      for (const r of rows.slice(3)) await db().updateTable('audit_log').set({ body: r.body, prev_hash: r.prev_hash, hash: r.hash }).where('seq', '=', r.seq).execute();
      expect((await verify()).ok).toBe(true);
    });

    it('detects a truncated tail and a forged checkpoint', async () => {
      const cp = await db().selectFrom('audit_checkpoints').selectAll().orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();
      const tail = await db().selectFrom('audit_log').selectAll().where('seq', '>=', cp.seq).execute();
      await db().deleteFrom('audit_log').where('seq', '>=', cp.seq).execute();
      expect((await verify()).first_broken?.reason).toMatch(/truncated/);
      await db().insertInto('audit_log').values(tail).execute();
      const sig = Uint8Array.from(cp.signature);
      sig[0] = sig[0]! ^ 1;
      await db().updateTable('audit_checkpoints').set({ signature: sig }).where('seq', '=', cp.seq).execute();
      expect((await verify()).first_broken?.reason).toMatch(/invalid signature/);
      await db().updateTable('audit_checkpoints').set({ signature: cp.signature }).where('seq', '=', cp.seq).execute();
      expect((await verify()).ok).toBe(true);
    });
  });

  describe('fail-closed', () => {
    it('refuses to return a secret when the audit entry cannot be stored (503), and recovers', async () => {
      await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name: 'closed' } });
      await api(base, 'PUT', '/v1/secrets/closed/k', { ...auth(), body: { data: { v: 'guarded-value-3e1' } } });
      await sql`alter table audit_log rename to audit_log_away`.execute(db());
      try {
        const res = await api(base, 'GET', '/v1/secrets/closed/k', auth());
        expectError(res, 503, 'unavailable');
        expect(res.text).not.toContain('guarded-value-3e1');
      } finally {
        await sql`alter table audit_log_away rename to audit_log`.execute(db());
      }
      expect((await api(base, 'GET', '/v1/secrets/closed/k', auth())).body.data.v).toBe('guarded-value-3e1');
      expect((await api(base, 'GET', '/v1/sys/audit/verify', auth())).body.ok).toBe(true);
    });

    it('seals and unseals with a checkpoint of the head', async () => {
      await api(base, 'POST', '/v1/sys/seal', auth());
      await unsealWith(base, shares.slice(0, 2));
      const head = (await api(base, 'GET', '/v1/sys/audit/verify', auth())).body;
      expect(head.ok).toBe(true);
    });
  });
});

describe('audit sinks', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-audit-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes JSON lines with the chain hashes to a file sink alongside the database', async () => {
    const store = await createStore('pglite');
    const file = join(dir, 'audit.log');
    const server = await startTestServer(store, { auditSinks: `db,file:${file}` });
    try {
      const { token } = await initAndUnseal(server.url, 1, 1);
      await api(server.url, 'POST', '/v1/namespaces', { token, body: { name: 'filed' } });
      const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(lines.map((l) => l.action)).toEqual(['sys.init', 'sys.unseal', 'namespace.create']);
      expect(lines[2]).toMatchObject({ seq: 3, namespace: 'filed', hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
      expect(lines[2].prev_hash).toBe(lines[1].hash);
      expect(readFileSync(file, 'utf8')).not.toContain(token);
    } finally {
      await server.stop();
      await store.cleanup();
    }
  });

  it('fails closed on a sink that errors and on one that hangs, without hanging the server', async () => {
    const store = await createStore('pglite');
    const fifo = join(dir, 'stuck.fifo');
    execFileSync('mkfifo', [fifo]);
    // Opening a FIFO for writing blocks until a reader appears: a sink that hangs.
    const server = await startTestServer(store, { auditSinks: `file:${fifo}`, auditTimeoutMs: 300 });
    try {
      const started = Date.now();
      const first = await api(server.url, 'GET', '/v1/sys/seal-status');
      expectError(first, 503, 'unavailable');
      const second = await api(server.url, 'GET', '/v1/sys/seal-status');
      expectError(second, 503, 'unavailable');
      expect(Date.now() - started).toBeLessThan(20_000);
      // The probe still answers: load balancers see a live process.
      expect((await api(server.url, 'GET', '/v1/sys/health')).status).toBe(501);
    } finally {
      // Give the blocked open a reader so the process can exit cleanly.
      const { spawn } = await import('node:child_process');
      const reader = spawn('cat', [fifo], { stdio: 'ignore' });
      await server.stop();
      reader.kill();
      await store.cleanup();
    }
    const broken = await createStore('pglite');
    const server2 = await startTestServer(broken, { auditSinks: `file:${dir}` }); // a directory: every write fails
    try {
      expectError(await api(server2.url, 'GET', '/v1/sys/seal-status'), 503, 'unavailable');
    } finally {
      await server2.stop();
      await broken.cleanup();
    }
  });

  it('initialises only together with its audit entry: a failing sink leaves the server uninitialised', async () => {
    const store = await createStore('pglite');
    // A directory as the file sink: every write fails.
    const server = await startTestServer(store, { auditSinks: `db,file:${dir}` });
    try {
      expectError(await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } }), 503, 'unavailable');
      expect((await api(server.url, 'GET', '/v1/sys/health')).status).toBe(501);
      // The database has the refused attempt (503), never a successful init.
      const rows = await server.storage.db.selectFrom('audit_log').select(['action', 'status']).where('action', '=', 'sys.init').execute();
      expect(rows.map((r) => r.status)).not.toContain(200);
      const seal = await server.storage.db.selectFrom('seal_config').selectAll().execute();
      expect(seal).toEqual([]);
    } finally {
      await server.stop();
      await store.cleanup();
    }
  });

  it('records exactly one entry for a successful init and for a refused second one', async () => {
    const store = await createStore('pglite');
    const server = await startTestServer(store);
    try {
      await initAndUnseal(server.url, 1, 1);
      expectError(await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } }), 409, 'already_initialized');
      const rows = await server.storage.db.selectFrom('audit_log').select(['action', 'status']).orderBy('seq').execute();
      expect(rows.filter((r) => r.action === 'sys.init')).toEqual([
        { action: 'sys.init', status: 200 },
        { action: 'sys.init', status: 409 },
      ]);
      expect((await server.core.audit.verify()).ok).toBe(true);
    } finally {
      await server.stop();
      await store.cleanup();
    }
  });

  it('can be turned off', async () => {
    const store = await createStore('pglite');
    const server = await startTestServer(store, { auditSinks: 'none' });
    try {
      await initAndUnseal(server.url, 1, 1);
      const n = await server.storage.db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      expect(Number(n.n)).toBe(0);
    } finally {
      await server.stop();
      await store.cleanup();
    }
  });
});
