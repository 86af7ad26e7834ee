// POST /v1/sys/restore streams: the upload is spooled to a private, already-unlinked file while it
// is checked, then inserted page by page (vault/restore-spool.ts). A backup of several MB (many
// spool read chunks, many INSERT pages) restores whole; an upload cut mid-way, or over
// COFFER_MAX_RESTORE_BYTES, changes nothing and leaves no file behind. Backup verify spools alike.
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { restoreEnvelopeLine, restoreUpload } from '@coffer/sdk/api';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

const NDJSON = { 'content-type': 'application/x-ndjson' };
const SECRETS = 600;

/** The files this process has open inside `dir` (an unlinked one reads "… (deleted)"). */
async function openFilesIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir + '/')) out.push(target);
  }
  return out;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describeEachStorage('restore streams a large upload through a spool file', (kind) => {
  let storeA: TestStore;
  let a: RunningServer;
  let token: string;
  let shares: string[];
  let backup: string;
  let spoolDir: string;
  const targets: Array<{ store: TestStore; server: RunningServer }> = [];

  const target = async (overrides: Record<string, unknown> = {}) => {
    const store = await createStore(kind);
    const server = await startTestServer(store, { kekRunJobs: false, restoreSpoolDir: spoolDir, ...overrides });
    targets.push({ store, server });
    return server;
  };
  const nothingRestored = async (b: RunningServer) => {
    expect((await api(b.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ initialized: false });
    for (const table of ['namespaces', 'secrets', 'seal_config'] as const) {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(b.core.db);
      expect({ table, rows: rows[0]!.n }).toEqual({ table, rows: 0 });
    }
  };
  const noSpoolLeft = async () => {
    await until('the spool file to be closed', async () => (await openFilesIn(spoolDir)).length === 0);
    expect(await readdir(spoolDir)).toEqual([]);
  };

  beforeAll(async () => {
    spoolDir = await mkdtemp(join(tmpdir(), 'coffer-spool-test-'));
    storeA = await createStore(kind);
    // Its backup verify spools there too.
    a = await startTestServer(storeA, { kekRunJobs: false, restoreSpoolDir: spoolDir });
    ({ token, shares } = await initAndUnseal(a.url, 3, 2));
    expect((await api(a.url, 'POST', '/v1/namespaces', { token, body: { name: 'bulk' } })).status).toBe(201);
    // ~4 KB of value per secret, written 8 at a time (bounded): a backup of several MB.
    const filler = 'x'.repeat(4000);
    for (let i = 0; i < SECRETS; i += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, SECRETS - i) }, async (_, j) => {
          const res = await api(a.url, 'PUT', `/v1/secrets/bulk/s${i + j}`, { token, body: { data: { n: String(i + j), filler } } });
          expect(res.status).toBe(200);
        }),
      );
    }
    const res = await api(a.url, 'GET', '/v1/sys/backup', { token });
    expect(res.status).toBe(200);
    backup = res.text;
    expect(backup.length).toBeGreaterThan(4 * 1024 * 1024);
  }, 300_000);

  afterAll(async () => {
    for (const t of targets) {
      await t.server.stop();
      await t.store.cleanup();
    }
    await a?.stop();
    await storeA?.cleanup();
    if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
  });

  it('an upload cut mid-way is spooled to an unlinked file, then changes nothing and leaves nothing', async () => {
    const b = await target();
    const url = new URL('/v1/sys/restore', b.url);
    const req = request(url, { method: 'POST', headers: NDJSON });
    const failed = new Promise<void>((resolve) => {
      req.on('error', () => resolve());
      req.on('response', (res) => {
        res.resume();
        resolve();
      });
    });
    req.write(restoreEnvelopeLine(shares.slice(0, 2)));
    req.write(backup.slice(0, Math.floor(backup.length / 2)));
    // The server spools what arrived: a file open in the spool dir, already unlinked (no name to find).
    await until('the spool file', async () => (await openFilesIn(spoolDir)).length > 0);
    expect((await openFilesIn(spoolDir)).every((f) => f.endsWith(' (deleted)'))).toBe(true);
    expect(await readdir(spoolDir)).toEqual([]);
    req.destroy();
    await failed;
    await noSpoolLeft();
    await nothingRestored(b);
  }, 120_000);

  it('refuses an upload over COFFER_MAX_RESTORE_BYTES with 413, changing nothing', async () => {
    const b = await target({ maxRestoreBytes: 1024 * 1024 });
    const res = await api(b.url, 'POST', '/v1/sys/restore', { rawBody: restoreUpload(backup, shares.slice(0, 2)), headers: NDJSON });
    expectError(res, 413, 'payload_too_large');
    await noSpoolLeft();
    await nothingRestored(b);
  }, 120_000);

  it('verify spools the upload the same way: every key and value of a several-MB backup opens, and the spool is gone after', async () => {
    const res = await api(a.url, 'POST', '/v1/sys/backup/verify', { token, rawBody: backup, headers: NDJSON });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ok: true, digest: true, failures: [] });
    // Read back from the spool table by table: every value, not only the fingerprinted rows kept in memory.
    expect(res.body.values).toEqual({ opened: SECRETS, failed: 0 });
    expect(res.body.kek_wrapped).toEqual({ opened: SECRETS, failed: 0 });
    await noSpoolLeft();
  }, 120_000);

  it('verify refuses an upload that carries shares (the server proves with its own root key) and one cut short, leaving nothing', async () => {
    const withShares = await api(a.url, 'POST', '/v1/sys/backup/verify', { token, rawBody: restoreUpload(backup, shares.slice(0, 2)), headers: NDJSON });
    expectError(withShares, 400, 'invalid_request');
    for (const share of shares) expect(withShares.text).not.toContain(share);
    const cut = await api(a.url, 'POST', '/v1/sys/backup/verify', { token, rawBody: backup.slice(0, Math.floor(backup.length / 2)), headers: NDJSON });
    expectError(cut, 400, 'invalid_backup');
    await noSpoolLeft();
    // Mid-upload, what arrived is on disk in an unlinked spool file, not in the server's memory.
    const req = request(new URL('/v1/sys/backup/verify', a.url), { method: 'POST', headers: { ...NDJSON, authorization: `Bearer ${token}` } });
    const ended = new Promise<void>((resolve) => {
      req.on('error', () => resolve());
      req.on('response', (res) => {
        res.resume();
        resolve();
      });
    });
    req.write(backup.slice(0, Math.floor(backup.length / 2)));
    await until('the spool file', async () => (await openFilesIn(spoolDir)).length > 0);
    expect((await openFilesIn(spoolDir)).every((f) => f.endsWith(' (deleted)'))).toBe(true);
    req.destroy();
    await ended;
    await noSpoolLeft();
  }, 120_000);

  it('restores a backup of several MB whole, page by page, and the spool is gone after', async () => {
    const b = await target();
    const res = await api(b.url, 'POST', '/v1/sys/restore', { rawBody: restoreUpload(backup, shares.slice(0, 2)), headers: NDJSON });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ sealed: false });
    expect(res.body.restored.secrets).toBe(SECRETS);
    await noSpoolLeft();
    for (const i of [0, 1, 499, 500, 501, SECRETS - 1]) {
      const read = await api(b.url, 'GET', `/v1/secrets/bulk/s${i}`, { token });
      expect(read.status).toBe(200);
      expect(read.body.data.n).toBe(String(i));
    }
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from secret_versions`.execute(b.core.db);
    expect(rows[0]!.n).toBe(SECRETS);
  }, 300_000);
});
