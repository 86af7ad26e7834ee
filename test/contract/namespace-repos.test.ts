// Conformance of the namespace-side repositories (namespaces, namespace_keys, kek_rewrap_jobs, the
// registry-driven root-wrapped rows) on PGlite and on PostgreSQL: the semantics the services rely on
// — name order in the "C" collation, unique names, the deferred root-version foreign key, usage counts
// that never lose an increment, rewraps guarded by the version read, and the row locks of writes
// (FOR SHARE) against rotations (FOR UPDATE).
import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import { isForeignKeyViolation, isUniqueViolation } from '@coffer/server/storage/errors';
import type { Database } from '@coffer/server/storage/schema';
import { ROOT_WRAPPED } from '@coffer/server/storage/wrapped-tables';
import { bytes, describeContract, rejection, seedNamespace, seedSeal, unique } from './backends.js';

const entryOf = (table: string) => ROOT_WRAPPED.find((e) => e.table === table)!;

describeContract('namespace repositories', (backend) => {
  beforeAll(() => seedSeal(backend));

  it('namespaces: insert, find by name, update, delete; a taken name is a unique violation', async () => {
    const { namespaces } = backend.repos;
    const { id, name } = await seedNamespace(backend);
    expect(await namespaces.findByName(name)).toEqual({ id, current_kek_version: 1, deletion_date: null });
    const taken = await rejection(namespaces.insert({ id: randomUUID(), name, description: '', current_kek_version: 1, rotation_period_seconds: null }));
    expect(isUniqueViolation(taken)).toBe(true);
    const when = new Date('2031-01-02T03:04:05.000Z');
    await namespaces.update(id, { description: 'd', rotation_period_seconds: 3600, deletion_date: when, updated_at: new Date() });
    const row = await namespaces.getById(id);
    expect({ description: row.description, period: row.rotation_period_seconds, deletion: row.deletion_date?.toISOString() }).toEqual({
      description: 'd',
      period: 3600,
      deletion: when.toISOString(),
    });
    expect((await namespaces.dueForShredding(new Date('2031-01-03'))).map((r) => r.id)).toContain(id);
    expect((await namespaces.dueForShredding(new Date('2031-01-01'))).map((r) => r.id)).not.toContain(id);
    await backend.repos.namespaceKeys.deleteAll(id);
    await namespaces.delete(id);
    expect(await namespaces.findByName(name)).toBeUndefined();
  });

  it('namespaces: pages in "C" collation order, each after the last name of the one before', async () => {
    const prefix = unique('zz-order');
    const suffixes = ['b', 'B', 'a-1', 'a_1', 'A', 'a'];
    for (const s of suffixes) await seedNamespace(backend, `${prefix}-${s}`);
    const seen: string[] = [];
    let after = prefix;
    for (let pages = 0; pages < 10; pages++) {
      const page = await backend.repos.namespaces.page(after, 2);
      const ours = page.map((r) => r.name).filter((n) => n.startsWith(prefix));
      seen.push(...ours);
      if (page.length < 2 || ours.length < page.length) break;
      after = page[page.length - 1]!.name;
    }
    // Byte order: upper case before lower case, '-' before '_'.
    expect(seen).toEqual(['A', 'B', 'a', 'a-1', 'a_1', 'b'].map((s) => `${prefix}-${s}`));
  });

  it('namespace_keys: versions, rotation states, retirement, destruction', async () => {
    const keys = backend.repos.namespaceKeys;
    const { id } = await seedNamespace(backend);
    expect(await keys.nextVersion(id)).toBe(2);
    const inserted = await keys.insertActive({ namespace_id: id, version: 2, wrapped_key: bytes(7, 0, 255), root_version: 1, origin: 'external' });
    expect(inserted.created_at).toBeInstanceOf(Date);
    await keys.markOthersRetiring(id, 2);
    expect((await keys.listVersions(id)).map((k) => [k.version, k.state, k.origin])).toEqual([
      [1, 'retiring', 'generated'],
      [2, 'active', 'external'],
    ]);
    const found = await keys.findWrapped(id, 2);
    expect({ wrapped: [...found!.wrapped_key!], root: found!.root_version }).toEqual({ wrapped: [7, 0, 255], root: 1 });
    expect(await keys.findWrapped(id, 3)).toBeUndefined();
    await keys.retireUnreferenced(id, 2);
    expect((await keys.listVersions(id)).map((k) => k.state)).toEqual(['retired', 'active']);
    await keys.destroyAll(id, new Date());
    expect((await keys.listVersions(id)).map((k) => k.state)).toEqual(['destroyed', 'destroyed']);
    expect((await keys.findWrapped(id, 1))!.wrapped_key).toBeNull();
  });

  it('namespace_keys: a version under a root version not in effect fails at commit (deferred foreign key)', async () => {
    const { id } = await seedNamespace(backend);
    const attempt = backend.storage.db.transaction().execute(async (trx) => {
      // Accepted inside the transaction: a root rotation moves seal_config in the same one.
      await backend.repos.namespaceKeys.insertActive({ namespace_id: id, version: 2, wrapped_key: bytes(1), root_version: 99, origin: 'generated' }, trx);
    });
    expect(isForeignKeyViolation(await rejection(attempt))).toBe(true);
    expect(await backend.repos.namespaceKeys.nextVersion(id)).toBe(2);
  });

  it('namespace_keys: usage counts add up, none lost between concurrent transactions', async () => {
    const keys = backend.repos.namespaceKeys;
    const { id } = await seedNamespace(backend);
    expect(await keys.addEncryptions(id, 1, 5)).toBe(5);
    expect(await keys.addEncryptions(id, 1, 3)).toBe(8);
    expect(await keys.addEncryptions(id, 42, 3)).toBe(0);
    const totals = await Promise.all(
      Array.from({ length: 6 }, () => backend.storage.db.transaction().execute((trx) => keys.addEncryptions(id, 1, 10, trx))),
    );
    expect(totals.sort((a, b) => a - b)).toEqual([18, 28, 38, 48, 58, 68]);
  });

  it('kek_rewrap_jobs: a rotation restarts the one job of a namespace', async () => {
    const { id } = await seedNamespace(backend);
    const job = () => backend.storage.db.selectFrom('kek_rewrap_jobs').selectAll().where('namespace_id', '=', id).execute();
    await backend.repos.rewrapJobs.restart(id, 2, 5, new Date());
    expect((await job()).map((j) => [j.target_version, j.state, j.cursor_path, Number(j.total), j.completed_at])).toEqual([[2, 'running', null, 5, null]]);
    await backend.repos.rewrapJobs.restart(id, 3, 0, new Date());
    expect((await job()).map((j) => [j.target_version, j.state, Number(j.total), j.completed_at instanceof Date])).toEqual([[3, 'completed', 0, true]]);
    await backend.repos.rewrapJobs.delete(id);
    expect(await job()).toEqual([]);
  });

  it('root-wrapped rows: listed by the registry, rewritten only under the version read, rolled back with the switch', async () => {
    const repo = backend.repos.rootWrapped;
    const entry = entryOf('namespace_keys');
    const { id } = await seedNamespace(backend);
    const mine = (rows: Awaited<ReturnType<typeof repo.rows>>) => rows.filter((r) => r.values.namespace_id === id);
    const [row] = mine(await repo.rows(entry, null));
    expect(row).toEqual({ values: { namespace_id: id, version: 1 }, wrapped: expect.anything(), rootVersion: 1 });
    expect([...row!.wrapped]).toEqual([9, 9]);
    expect(mine(await repo.rows(entry, 2))).toEqual([]);
    const failed = backend.storage.db.transaction().execute(async (trx) => {
      await repo.replace(entry, row!, bytes(4, 4), 2, trx);
      // A second writer that read the row under version 1 finds it moved and leaves it.
      await repo.replace(entry, row!, bytes(5, 5), 3, trx);
      const moved = mine(await repo.rows(entry, 2, trx));
      expect(moved.map((r) => [[...r.wrapped], r.rootVersion])).toEqual([[[4, 4], 2]]);
      throw new Error('roll back');
    });
    await expect(failed).rejects.toThrow('roll back');
    expect(mine(await repo.rows(entry, 1)).map((r) => [...r.wrapped])).toEqual([[9, 9]]);
  });

  it('root-wrapped rows: a spent import key is not listed (its private key is gone)', async () => {
    const entry = entryOf('import_keys');
    const live = randomUUID();
    const spent = randomUUID();
    for (const id of [live, spent]) {
      await backend.repos.importKeys.insert({
        id,
        target: 'root',
        namespace_id: null,
        algorithm: 'RSAES_OAEP_SHA_256',
        public_key: 'pem',
        hsm_label: null,
        wrapped_private_key: bytes(1, 2),
        root_version: 1,
        created_by: 'contract',
        expires_at: new Date(Date.now() + 3_600_000),
      });
    }
    expect(await backend.repos.importKeys.spend(spent, new Date())).toBe(true);
    const ids = (await backend.repos.rootWrapped.rows(entry, null)).map((r) => r.values.id);
    expect(ids).toContain(live);
    expect(ids).not.toContain(spent);
  });

  it('locks: writes share a namespace row, a rotation waits for them', async () => {
    const { name } = await seedNamespace(backend);
    const { namespaces } = backend.repos;
    if (!backend.concurrent) {
      // One connection: a transaction holds it from BEGIN to COMMIT, so the next one simply runs after.
      await backend.storage.db.transaction().execute((trx) => namespaces.lockForWrite(name, trx));
      expect(await backend.storage.db.transaction().execute((trx) => namespaces.lockByName(name, trx))).toMatchObject({ deletion_date: null });
      return;
    }
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let holding!: () => void;
    const isHolding = new Promise<void>((r) => (holding = r));
    const writer = backend.storage.db.transaction().execute(async (trx) => {
      expect(await namespaces.lockForWrite(name, trx)).toBeDefined();
      holding();
      await held;
    });
    await isHolding;
    const impatient = <T>(fn: (trx: Transaction<Database>) => Promise<T>) =>
      backend.storage.db.transaction().execute(async (trx) => {
        await sql`set local lock_timeout = '300ms'`.execute(trx);
        return fn(trx);
      });
    try {
      // Another write gets its shared lock at once; a rotation's FOR UPDATE cannot (55P03: lock_not_available).
      expect(await impatient((trx) => namespaces.lockForWrite(name, trx))).toBeDefined();
      await expect(impatient((trx) => namespaces.lockByName(name, trx))).rejects.toMatchObject({ code: '55P03' });
    } finally {
      release();
      await writer;
    }
    expect(await impatient((trx) => namespaces.lockByName(name, trx))).toBeDefined();
  });
});
