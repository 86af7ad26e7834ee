// A secret write's last statement (storage/repos/secrets.ts insertVersionAndPrune with companions)
// and, on PostgreSQL, the pipelined client under it (storage/pipelined-client.ts): the version, the
// retention delete, the usage reservation, the audit intent and the NOTIFY commit together and
// only together; with `last` the COMMIT rides with the statement (visible to another connection
// before Kysely's own commit), a statement after it is refused, and a failure commits nothing;
// the two statements are named (prepared once per connection) and survive a failed plan.
import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Database } from '@coffer/server/storage/schema';
import type { VersionCompanions } from '@coffer/server/storage/repos/secrets';
import { bytes, describeContract, eventually, rejection, seedNamespace, unique } from './backends.js';

describeContract('write commit', (backend) => {
  const intentOf = (requestId: string) => ({ requestId, owner: 'test-owner', time: new Date(), draft: JSON.stringify({ request_id: requestId }) });
  const intentCount = async (requestId: string) =>
    Number((await sql<{ n: number }>`select count(*) as n from audit_intents where request_id = ${requestId}`.execute(backend.storage.db)).rows[0]!.n);
  const encryptions = async (namespaceId: string) =>
    Number((await sql<{ n: number }>`select encryptions as n from namespace_keys where namespace_id = ${namespaceId} and version = 1`.execute(backend.storage.db)).rows[0]!.n);

  /** One write as SecretService.write makes it; `after` runs in the transaction after the last statement. */
  function write(namespace: string, path: string, companions: (secretId: string) => VersionCompanions, after?: (trx: Transaction<Database>) => Promise<void>, secretId?: string) {
    return backend.storage.db.transaction().execute(async (trx) => {
      const locked = await backend.repos.secrets.lockNamespaceAndUpsert(namespace, { id: randomUUID(), path, maxVersions: 2, defaultMaxVersions: 2 }, trx);
      const secret = locked!.secret!;
      const version = secret.current_version;
      const stored = await backend.repos.secrets.insertVersionAndPrune(
        { secret_id: secretId ?? secret.id, version, type: 'kv', metadata: '{}', kek_version: 1, wrapped_dek: bytes(version), ciphertext: bytes(version, 1) },
        version - secret.max_versions,
        trx,
        companions(secret.id),
      );
      await after?.(trx);
      return { version, ...stored };
    });
  }

  it('stores the version, prunes, reserves usage and records the intent in one statement', async () => {
    const ns = await seedNamespace(backend);
    const requestId = unique('req');
    await write(ns.name, 'a', () => ({}));
    await write(ns.name, 'a', () => ({}));
    const third = await write(ns.name, 'a', () => ({ reserve: { namespaceId: ns.id, kekVersion: 1, n: 50 }, intent: intentOf(requestId), last: true }));
    expect(third).toMatchObject({ version: 3, encryptions: 50 });
    expect(third.created_at).toBeInstanceOf(Date);
    expect(await encryptions(ns.id)).toBe(50);
    expect(await intentCount(requestId)).toBe(1);
    const secret = await backend.repos.secrets.find(ns.name, 'a', false);
    expect((await backend.repos.secrets.history(secret!.id)).map((v) => v.version)).toEqual([3, 2]);
    // Without a reservation the count is not read: null, and the stored count stays.
    expect((await write(ns.name, 'a', () => ({ last: true }))).encryptions).toBeNull();
    expect(await encryptions(ns.id)).toBe(50);
  });

  it('commits nothing when the statement fails: not the upsert, not the intent, not the reservation', async () => {
    const ns = await seedNamespace(backend);
    await write(ns.name, 'b', () => ({}));
    const requestId = unique('req');
    // A version of a secret that does not exist: the foreign key fails the statement.
    const err = await rejection(write(ns.name, 'b', () => ({ reserve: { namespaceId: ns.id, kekVersion: 1, n: 7 }, intent: intentOf(requestId), last: true }), undefined, randomUUID()));
    expect(String(err)).toMatch(/foreign key|violates/i);
    expect((await backend.repos.secrets.find(ns.name, 'b', false))!.current_version).toBe(1);
    expect(await intentCount(requestId)).toBe(0);
    expect(await encryptions(ns.id)).toBe(0);
    // The connection is usable again (its aborted transaction was rolled back), over and over.
    for (let i = 0; i < 6; i++) await write(ns.name, 'b', () => ({ last: true }));
    expect((await backend.repos.secrets.find(ns.name, 'b', false))!.current_version).toBe(7);
  });

  it('recovers when its statement cannot be planned (a table away) once it can again (named statements, PostgreSQL)', async () => {
    const ns = await seedNamespace(backend);
    await write(ns.name, 'g', () => ({ intent: intentOf(unique('req')), last: true })); // prepared on some connections
    await sql`alter table audit_intents rename to audit_intents_away`.execute(backend.storage.db);
    try {
      for (let i = 0; i < 3; i++) {
        expect(String(await rejection(write(ns.name, 'g', () => ({ intent: intentOf(unique('req')), last: true }))))).toMatch(/audit_intents/);
      }
    } finally {
      await sql`alter table audit_intents_away rename to audit_intents`.execute(backend.storage.db);
    }
    const requestIds = Array.from({ length: 8 }, () => unique('req'));
    for (const requestId of requestIds) await write(ns.name, 'g', () => ({ intent: intentOf(requestId), last: true }));
    for (const requestId of requestIds) expect(await intentCount(requestId)).toBe(1);
    expect((await backend.repos.secrets.find(ns.name, 'g', false))!.current_version).toBe(9);
  });

  it('sends the notification at commit (PostgreSQL)', async () => {
    if (!backend.sharedFeed) return;
    const payload = JSON.stringify({ kind: 'secret', namespace: unique('n'), path: 'p' });
    const seen: string[] = [];
    const listener = (p: string) => seen.push(p);
    backend.storage.changes.events.on('change', listener);
    try {
      const ns = await seedNamespace(backend);
      await write(ns.name, 'c', () => ({ notify: { channel: backend.storage.changes.channel!, payload }, last: true }));
      await eventually(() => expect(seen).toContain(payload));
    } finally {
      backend.storage.changes.events.off('change', listener);
    }
  });

  it('with `last`, the commit goes with the statement: another connection sees it before the transaction returns (PostgreSQL)', async () => {
    if (!backend.concurrent) return;
    const ns = await seedNamespace(backend);
    let seenInside: number | undefined;
    await write(ns.name, 'd', () => ({ last: true }), async () => {
      seenInside = (await backend.repos.secrets.find(ns.name, 'd', false))?.current_version;
    });
    expect(seenInside).toBe(1);
  });

  it('refuses a statement after the last one (PostgreSQL): it would run outside the transaction', async () => {
    if (!backend.concurrent) return;
    const ns = await seedNamespace(backend);
    const err = await rejection(write(ns.name, 'e', () => ({ last: true }), async (trx) => void (await sql`select 1`.execute(trx))));
    expect(String(err)).toMatch(/after its transaction committed/);
    // The write itself had committed; the connection goes on serving transactions.
    expect((await backend.repos.secrets.find(ns.name, 'e', false))!.current_version).toBe(1);
    for (let i = 0; i < 6; i++) await write(ns.name, 'e', () => ({ last: true }));
    expect((await backend.repos.secrets.find(ns.name, 'e', false))!.current_version).toBe(7);
  });

  it('sends nothing for an empty transaction and rolls back one that fails after a statement', async () => {
    expect(await backend.storage.db.transaction().execute(async () => 42)).toBe(42);
    const ns = await seedNamespace(backend);
    await write(ns.name, 'f', () => ({}));
    const err = await rejection(
      backend.storage.db.transaction().execute(async (trx) => {
        await backend.repos.secrets.lockNamespaceAndUpsert(ns.name, { id: randomUUID(), path: 'f', maxVersions: null, defaultMaxVersions: 2 }, trx);
        throw new Error('changed my mind');
      }),
    );
    expect(String(err)).toMatch(/changed my mind/);
    expect((await backend.repos.secrets.find(ns.name, 'f', false))!.current_version).toBe(1);
  });
});
