// Conformance of the secret-side repositories (secrets and versions, folder listings, BYOK import
// keys, escrow requests) on PGlite and on PostgreSQL: version numbers that concurrent writers never
// share, retention, the version state changes, listing order and pagination in the "C" collation,
// and the compare-and-set transitions that make an import key and an escrow download single-use.
import { randomUUID } from 'node:crypto';
import { bytes, describeContract, seedNamespace, seedSeal } from './backends.js';

describeContract('secret repositories', (backend) => {
  beforeAll(() => seedSeal(backend));

  /** Writes one version of `path` as SecretService.write does (without the crypto). */
  async function write(namespaceId: string, path: string, maxVersions: number | null = null): Promise<{ id: string; version: number }> {
    return backend.storage.db.transaction().execute(async (trx) => {
      const secret = await backend.repos.secrets.upsertForWrite({ id: randomUUID(), namespaceId, path, maxVersions, defaultMaxVersions: 10 }, trx);
      const version = secret.current_version;
      await backend.repos.secrets.insertVersion(
        { secret_id: secret.id, version, type: 'kv', metadata: JSON.stringify({ v: String(version) }), kek_version: 1, wrapped_dek: bytes(version), ciphertext: bytes(version, 0) },
        trx,
      );
      await backend.repos.secrets.pruneVersions(secret.id, version - secret.max_versions, trx);
      return { id: secret.id, version };
    });
  }

  it('secrets: each write takes the next version; concurrent writers never share one', async () => {
    const ns = await seedNamespace(backend);
    const first = await write(ns.id, 'app/db');
    expect(first.version).toBe(1);
    expect((await write(ns.id, 'app/db')).id).toBe(first.id);
    const versions = await Promise.all(Array.from({ length: 6 }, () => write(ns.id, 'app/db')));
    expect(versions.map((v) => v.version).sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 7, 8]);
    const latest = await backend.repos.secrets.readVersion(ns.name, 'app/db', undefined);
    expect({ version: latest!.version, namespace: latest!.namespace_id, metadata: latest!.metadata, dek: [...latest!.wrapped_dek!] }).toEqual({
      version: 8,
      namespace: ns.id,
      metadata: { v: '8' },
      dek: [8],
    });
    expect((await backend.repos.secrets.readVersion(ns.name, 'app/db', 2))!.version).toBe(2);
    expect(await backend.repos.secrets.readVersion(ns.name, 'app/db', 99)).toBeUndefined();
    expect(await backend.repos.secrets.readVersion(ns.name, 'app/none', undefined)).toBeUndefined();
  });

  it('secrets: retention keeps max_versions; a given max_versions sticks, none keeps the stored one', async () => {
    const ns = await seedNamespace(backend);
    for (let i = 0; i < 3; i++) await write(ns.id, 'r', 2);
    const secret = await backend.repos.secrets.find(ns.name, 'r', false);
    expect({ current: secret!.current_version, max: secret!.max_versions }).toEqual({ current: 3, max: 2 });
    expect((await backend.repos.secrets.history(secret!.id)).map((v) => v.version)).toEqual([3, 2]);
    await write(ns.id, 'r');
    expect((await backend.repos.secrets.find(ns.name, 'r', false))!.max_versions).toBe(2);
  });

  it('secret_versions: delete keeps the first time, undelete, destroy erases the DEK and ciphertext', async () => {
    const ns = await seedNamespace(backend);
    const { id } = await write(ns.id, 'v');
    await write(ns.id, 'v');
    const secrets = backend.repos.secrets;
    const first = new Date('2030-01-01T00:00:00.000Z');
    await secrets.markDeleted(id, [1], first);
    await secrets.markDeleted(id, [1, 2], new Date('2030-02-01T00:00:00.000Z'));
    const deleted = await secrets.history(id);
    expect(deleted.map((v) => [v.version, v.deleted_at?.toISOString()])).toEqual([
      [2, '2030-02-01T00:00:00.000Z'],
      [1, first.toISOString()],
    ]);
    await secrets.undelete(id, [2]);
    await secrets.destroyVersions(id, [1], new Date());
    expect((await secrets.findVersions(id, [1, 2, 3])).map((v) => [v.version, v.destroyed_at !== null]).sort()).toEqual([
      [1, true],
      [2, false],
    ]);
    const destroyed = await secrets.readVersion(ns.name, 'v', 1);
    expect({ dek: destroyed!.wrapped_dek, ciphertext: destroyed!.ciphertext }).toEqual({ dek: null, ciphertext: null });
    expect(await secrets.countDeksToRewrap(ns.id, 2)).toBe(1);
    expect(await secrets.countDeksToRewrap(ns.id, 1)).toBe(0);
    expect(await secrets.purge(id)).toBe(2);
    expect(await secrets.find(ns.name, 'v', false)).toBeUndefined();
  });

  it('listing: paths and folder entries in byte order, a page at a time', async () => {
    const ns = await seedNamespace(backend);
    const paths = ['a/x', 'a/y', 'a/z/deep', 'B', 'b', 'b/1', 'c_d', 'c-d'];
    for (const p of paths) await write(ns.id, p);
    const secrets = backend.repos.secrets;
    const all: string[] = [];
    for (let after = '', n = 0; n < 10; n++) {
      const page = await secrets.pathsUnder(ns.id, '', after, 3);
      all.push(...page.map((r) => r.path));
      if (page.length < 3) break;
      after = page[page.length - 1]!.path;
    }
    expect(all).toEqual(['B', 'a/x', 'a/y', 'a/z/deep', 'b', 'b/1', 'c-d', 'c_d']);
    expect((await secrets.pathsUnder(ns.id, 'a/', 'a/x', 10)).map((r) => r.path)).toEqual(['a/y', 'a/z/deep']);
    const entries = await secrets.folderEntries(ns.id, '', '', 10, 2);
    expect(entries).toEqual([
      { key: 'B', sample: ['B'], total: 1 },
      { key: 'a/', sample: ['a/x', 'a/y'], total: 3 },
      { key: 'b', sample: ['b'], total: 1 },
      { key: 'b/', sample: ['b/1'], total: 1 },
      { key: 'c-d', sample: ['c-d'], total: 1 },
      { key: 'c_d', sample: ['c_d'], total: 1 },
    ]);
    expect((await secrets.folderEntries(ns.id, 'a/', 'z/', 10, 8)).map((e) => e.key)).toEqual([]);
    expect((await secrets.folderEntries(ns.id, 'a/', 'x', 10, 8)).map((e) => e.key)).toEqual(['y', 'z/']);
    expect((await secrets.folderEntries(ns.id, '', 'a/', 2, 8)).map((e) => e.key)).toEqual(['b', 'b/']);
    expect(await secrets.countInNamespace(ns.id)).toBe(paths.length);
  });

  it('listing: a bulk page holds the readable current versions only', async () => {
    const ns = await seedNamespace(backend);
    for (const p of ['f/1', 'f/2', 'f/3', 'g/1']) await write(ns.id, p);
    const two = await backend.repos.secrets.find(ns.name, 'f/2', false);
    await backend.repos.secrets.markDeleted(two!.id, [1], new Date());
    const page = await backend.repos.secrets.currentVersionsPage(ns.id, 'f/', '', 10);
    expect(page.map((r) => r.path)).toEqual(['f/1', 'f/3']);
    expect((await backend.repos.secrets.currentVersionsPage(ns.id, 'f/', 'f/1', 1)).map((r) => r.path)).toEqual(['f/3']);
  });

  it('secrets: a namespace purge removes every secret and version', async () => {
    const ns = await seedNamespace(backend);
    for (const p of ['p/1', 'p/2']) await write(ns.id, p);
    await backend.storage.db.transaction().execute((trx) => backend.repos.secrets.purgeNamespace(ns.id, trx));
    expect(await backend.repos.secrets.countInNamespace(ns.id)).toBe(0);
    expect(await backend.repos.secrets.readVersion(ns.name, 'p/1', undefined)).toBeUndefined();
  });

  it('import keys: counted while open, spent exactly once, expired ones found and retired', async () => {
    const keys = backend.repos.importKeys;
    const ns = await seedNamespace(backend);
    const before = await keys.countOpen();
    const make = async (expiresAt: Date) => {
      const id = randomUUID();
      await keys.insert({
        id,
        target: 'namespace',
        namespace_id: ns.id,
        algorithm: 'RSAES_OAEP_SHA_256',
        public_key: 'pem',
        hsm_label: `label-${id}`,
        wrapped_private_key: null,
        root_version: null,
        created_by: 'contract',
        expires_at: expiresAt,
      });
      return id;
    };
    const fresh = await make(new Date(Date.now() + 3_600_000));
    const old = await make(new Date(Date.now() - 1000));
    expect(await keys.countOpen()).toBe(before + 2);
    expect((await keys.find(fresh))!.namespace_id).toBe(ns.id);
    const attempts = await Promise.all([keys.spend(fresh, new Date()), keys.spend(fresh, new Date())]);
    expect(attempts.sort()).toEqual([false, true]);
    expect((await keys.find(fresh))!.used_at).toBeInstanceOf(Date);
    expect((await keys.listExpired(new Date())).map((r) => [r.id, r.hsm_label])).toContainEqual([old, `label-${old}`]);
    await keys.retire(old, new Date());
    expect((await keys.listExpired(new Date())).map((r) => r.id)).not.toContain(old);
    expect(await keys.countOpen()).toBe(before);
  });

  it('escrow requests: pending → approved → downloaded, each step once, none after expiry, newest first', async () => {
    const requests = backend.repos.escrowRequests;
    const ns = await seedNamespace(backend);
    const make = (expiresAt: Date) =>
      requests.insert({ id: randomUUID(), namespace_id: ns.id, kek_version: 1, algorithm: 'RSAES_OAEP_SHA_256', public_key: 'pem', requested_by: 'alice', expires_at: expiresAt });
    const req = await make(new Date(Date.now() + 3_600_000));
    expect({ state: req.state, approved: req.approved_by }).toEqual({ state: 'pending', approved: null });
    expect(await requests.markDownloaded(req.id, new Date())).toBe(false);
    expect((await Promise.all([requests.approve(req.id, 'bob', new Date()), requests.approve(req.id, 'carol', new Date())])).sort()).toEqual([false, true]);
    expect(await requests.approve(req.id, 'bob', new Date())).toBe(false);
    expect((await Promise.all([requests.markDownloaded(req.id, new Date()), requests.markDownloaded(req.id, new Date())])).sort()).toEqual([false, true]);
    const found = await requests.findWithNamespace(req.id);
    expect({ state: found!.state, ns: found!.namespace_name, downloaded: found!.downloaded_at instanceof Date }).toEqual({ state: 'downloaded', ns: ns.name, downloaded: true });
    expect(await requests.getForDownload(req.id)).toEqual({ namespace_id: ns.id, public_key: 'pem', kms_key_id: null });
    const expired = await make(new Date(Date.now() - 1000));
    expect(await requests.approve(expired.id, 'bob', new Date())).toBe(false);
    expect((await requests.listByNamespace(ns.id, 10)).map((r) => r.id)).toEqual([expired.id, req.id]);
    expect((await requests.listByNamespace(ns.id, 1)).map((r) => r.id)).toEqual([expired.id]);
    expect(await requests.findWithNamespace(randomUUID())).toBeUndefined();
  });
});
