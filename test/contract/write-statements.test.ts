// The write path's combined statements (storage/repos/secrets.ts), on PGlite and PostgreSQL: the
// namespace lock with the upsert, and the version insert with the retention delete, behave as the
// separate statements they replace — versions concurrent writers never share, nothing touched in
// a missing or shredding namespace, the FOR SHARE lock a rotation waits for, retention kept.
import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Database } from '@coffer/server/storage/schema';
import { bytes, describeContract, seedNamespace, seedSeal } from './backends.js';

describeContract('write statements', (backend) => {
  beforeAll(() => seedSeal(backend));

  async function write(namespace: string, path: string, maxVersions: number | null = null) {
    return backend.storage.db.transaction().execute(async (trx) => {
      const locked = await backend.repos.secrets.lockNamespaceAndUpsert(namespace, { id: randomUUID(), path, maxVersions, defaultMaxVersions: 3 }, trx);
      if (!locked?.secret) return locked;
      const { secret } = locked;
      const version = secret.current_version;
      await backend.repos.secrets.insertVersionAndPrune(
        { secret_id: secret.id, version, type: 'kv', metadata: JSON.stringify({ v: String(version) }), kek_version: 1, wrapped_dek: bytes(version), ciphertext: bytes(version, 0) },
        version - secret.max_versions,
        trx,
      );
      return locked;
    });
  }

  it('upserts behind the namespace lock; concurrent writers never share a version', async () => {
    const ns = await seedNamespace(backend);
    const first = await write(ns.name, 'app/db');
    expect(first).toMatchObject({ namespace: { id: ns.id, current_kek_version: 1, deletion_date: null }, secret: { current_version: 1, max_versions: 3 } });
    const more = await Promise.all(Array.from({ length: 6 }, () => write(ns.name, 'app/db')));
    expect(more.map((r) => r!.secret!.current_version).sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(new Set(more.map((r) => r!.secret!.id))).toEqual(new Set([first!.secret!.id]));
    // Retention: the last three versions remain, the newest readable with its own metadata.
    const secret = await backend.repos.secrets.find(ns.name, 'app/db', false);
    expect((await backend.repos.secrets.history(secret!.id)).map((v) => v.version)).toEqual([7, 6, 5]);
    expect((await backend.repos.secrets.readVersion(ns.name, 'app/db', undefined))!.metadata).toEqual({ v: '7' });
    // A given max_versions sticks; none keeps the stored one.
    expect((await write(ns.name, 'app/db', 1))!.secret!.max_versions).toBe(1);
    expect((await write(ns.name, 'app/db'))!.secret!.max_versions).toBe(1);
    expect((await backend.repos.secrets.history(secret!.id)).map((v) => v.version)).toEqual([9]);
  });

  it('touches nothing in a missing or shredding namespace', async () => {
    expect(await write(`missing-${randomUUID()}`, 'x')).toBeUndefined();
    const ns = await seedNamespace(backend);
    const when = new Date('2031-01-01T00:00:00.000Z');
    await backend.repos.namespaces.update(ns.id, { deletion_date: when, updated_at: new Date() });
    const locked = await write(ns.name, 'x');
    expect(locked).toEqual({ namespace: { id: ns.id, current_kek_version: 1, deletion_date: when }, secret: undefined });
    expect(await backend.repos.secrets.countInNamespace(ns.id)).toBe(0);
    await expect(
      backend.storage.db.transaction().execute((trx) =>
        backend.repos.secrets.insertVersionAndPrune({ secret_id: randomUUID(), version: 1, type: 'kv', metadata: '{}', kek_version: 1, wrapped_dek: bytes(1), ciphertext: bytes(1) }, 1, trx),
      ),
    ).rejects.toThrow(RangeError);
  });

  it('holds the namespace row FOR SHARE: other writes go on, a rotation waits', async () => {
    if (!backend.concurrent) return; // one connection: transactions cannot overlap
    const { name } = await seedNamespace(backend);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let holding!: () => void;
    const isHolding = new Promise<void>((r) => (holding = r));
    const writer = backend.storage.db.transaction().execute(async (trx) => {
      expect((await backend.repos.secrets.lockNamespaceAndUpsert(name, { id: randomUUID(), path: 'held', maxVersions: null, defaultMaxVersions: 3 }, trx))?.secret).toBeDefined();
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
      expect(await impatient((trx) => backend.repos.namespaces.lockForWrite(name, trx))).toBeDefined();
      await expect(impatient((trx) => backend.repos.namespaces.lockByName(name, trx))).rejects.toMatchObject({ code: '55P03' });
    } finally {
      release();
      await writer;
    }
  });
});
