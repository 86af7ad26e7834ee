// A combined write's two statements (storage/repos/secrets.ts lockNamespaceAndSecrets and
// insertVersionsAndPrune; secrets/write-combiner.ts uses them), on PGlite and PostgreSQL: the lock
// leaves the version counters where they are (a new secret at 0), the last statement stores every
// version of every secret with its own bytes, moves each counter and max_versions, prunes each
// secret, reserves usage once and stores every intent — all or nothing.
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { bytes, describeContract, rejection, seedNamespace, seedSeal, unique } from './backends.js';

describeContract('write group statements', (backend) => {
  beforeAll(() => seedSeal(backend));
  const intentOf = (requestId: string) => ({ requestId, owner: 'test-owner', time: new Date(), draft: JSON.stringify({ request_id: requestId }) });
  const intentCount = async (ids: string[]) =>
    Number((await sql<{ n: number }>`select count(*) as n from audit_intents where request_id in (${sql.join(ids)})`.execute(backend.storage.db)).rows[0]!.n);
  const encryptions = async (namespaceId: string) =>
    Number((await sql<{ n: number }>`select encryptions as n from namespace_keys where namespace_id = ${namespaceId} and version = 1`.execute(backend.storage.db)).rows[0]!.n);
  const row = (version: number, secret_id = '') => ({ secret_id, version, type: 'kv', metadata: JSON.stringify({ v: String(version) }), kek_version: 1, wrapped_dek: bytes(version, 0, 255), ciphertext: bytes(version, 7, 0, 9) });

  /** Locks, then stores `count` versions after the current one of each path with max_versions `max`. */
  function group(namespace: string, paths: string[], count: number, max: number, requestIds: string[], reserve?: { namespaceId: string; n: number }) {
    return backend.storage.db.transaction().execute(async (trx) => {
      const locked = await backend.repos.secrets.lockNamespaceAndSecrets(namespace, paths, 4, trx);
      const secrets = paths.map((p) => locked!.secrets.get(p)!);
      const moved = secrets.map((s) => ({ id: s.id, currentVersion: s.current_version + count, maxVersions: max, upTo: s.current_version + count - max }));
      const rows = secrets.flatMap((s, i) => Array.from({ length: count }, (_, j) => row(s.current_version + j + 1, s.id)).filter((r) => r.version > moved[i]!.upTo));
      const stored = await backend.repos.secrets.insertVersionsAndPrune(moved, rows, trx, {
        intents: requestIds.map(intentOf),
        reserve: reserve && { namespaceId: reserve.namespaceId, kekVersion: 1, n: reserve.n },
        last: true,
      });
      return { from: secrets[0]!.current_version, secret: secrets[0]!, secrets, ...stored };
    });
  }

  it('locks without moving the counter (a new secret at 0), then stores the group', async () => {
    const ns = await seedNamespace(backend);
    const ids = [unique('req'), unique('req'), unique('req')];
    const first = await group(ns.name, ['app/x', 'app/b'], 3, 10, ids, { namespaceId: ns.id, n: 30 });
    expect(first.from).toBe(0);
    expect(first.secret.max_versions).toBe(4); // the default, until the group's statement sets it
    expect(first.encryptions).toBe(30);
    expect(first.created_at).toBeInstanceOf(Date);
    expect(await encryptions(ns.id)).toBe(30);
    expect(await intentCount(ids)).toBe(3);
    expect(first.secrets.map((x) => x.current_version)).toEqual([0, 0]);
    expect(await backend.repos.secrets.find(ns.name, 'app/b', false)).toMatchObject({ current_version: 3, max_versions: 10 });
    const found = await backend.repos.secrets.find(ns.name, 'app/x', false);
    expect(found).toMatchObject({ current_version: 3, max_versions: 10 });
    expect((await backend.repos.secrets.history(found!.id)).map((v) => [v.version, v.metadata])).toEqual([
      [3, { v: '3' }],
      [2, { v: '2' }],
      [1, { v: '1' }],
    ]);
    for (const v of [1, 2, 3]) {
      const stored = await backend.repos.secrets.readVersion(ns.name, 'app/x', v);
      expect(Buffer.from(stored!.wrapped_dek!)).toEqual(Buffer.from(row(v).wrapped_dek));
      expect(Buffer.from(stored!.ciphertext!)).toEqual(Buffer.from(row(v).ciphertext));
    }
    // Retention: a second group with max 2 prunes the old versions and does not store its first.
    const second = await group(ns.name, ['app/x'], 3, 2, []);
    expect(second.from).toBe(3);
    expect(second.encryptions).toBeNull();
    expect((await backend.repos.secrets.history(found!.id)).map((v) => v.version)).toEqual([6, 5]);
    expect(await backend.repos.secrets.find(ns.name, 'app/x', false)).toMatchObject({ current_version: 6, max_versions: 2 });
  });

  it('commits nothing when the statement fails: not the versions, not the counter, not the intents or the reservation', async () => {
    const ns = await seedNamespace(backend);
    await group(ns.name, ['y'], 2, 10, []);
    const taken = unique('req');
    await group(ns.name, ['y'], 1, 10, [taken]);
    const ids = [unique('req'), taken]; // the second intent's request id is taken: the statement fails
    expect(String(await rejection(group(ns.name, ['y', 'z'], 2, 10, ids, { namespaceId: ns.id, n: 5 })))).toMatch(/duplicate|unique/i);
    expect(await intentCount([ids[0]!])).toBe(0);
    expect(await encryptions(ns.id)).toBe(0);
    const found = await backend.repos.secrets.find(ns.name, 'y', false);
    expect(found!.current_version).toBe(3);
    expect((await backend.repos.secrets.history(found!.id)).map((v) => v.version)).toEqual([3, 2, 1]);
    // The connection goes on; a group that rolls back leaves a new secret uncreated.
    await backend.storage.db
      .transaction()
      .execute(async (trx) => {
        await backend.repos.secrets.lockNamespaceAndSecrets(ns.name, ['never'], 4, trx);
        throw new Error('all refused');
      })
      .catch(() => undefined);
    expect(await backend.repos.secrets.find(ns.name, 'never', false)).toBeUndefined();
    expect(await backend.repos.secrets.find(ns.name, 'z', false)).toBeUndefined();
    expect((await group(ns.name, ['y'], 2, 10, [])).from).toBe(3);
  });

  it('touches nothing in a missing or shredding namespace, and refuses to prune what it stores', async () => {
    const none = await backend.storage.db.transaction().execute((trx) =>
      backend.repos.secrets.lockNamespaceAndSecrets(`missing-${randomUUID()}`, ['x'], 4, trx),
    );
    expect(none).toBeUndefined();
    const ns = await seedNamespace(backend);
    await backend.repos.namespaces.update(ns.id, { deletion_date: new Date('2031-01-01T00:00:00.000Z'), updated_at: new Date() });
    const locked = await backend.storage.db.transaction().execute((trx) =>
      backend.repos.secrets.lockNamespaceAndSecrets(ns.name, ['x', 'y'], 4, trx),
    );
    expect(locked?.secrets.size).toBe(0);
    expect(await backend.repos.secrets.countInNamespace(ns.id)).toBe(0);
    await expect(
      backend.storage.db.transaction().execute((trx) =>
        backend.repos.secrets.insertVersionsAndPrune([{ id: 'a', currentVersion: 2, maxVersions: 1, upTo: 1 }], [row(1, 'a'), row(2, 'a')], trx),
      ),
    ).rejects.toThrow(RangeError);
  });
});
