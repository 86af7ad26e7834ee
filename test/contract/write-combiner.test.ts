// secrets/write-combiner.ts writeGroup on PGlite and PostgreSQL, with groups built by hand so the
// order is known: check-and-set is judged in the order the writes are applied (a refused one takes
// no version and leaves no intent), max_versions changes apply from the write that makes them,
// a statement PostgreSQL refuses sends the group one by one (only the write it concerns fails),
// and every request is settled. The keyring is a stand-in that records the AAD each envelope was
// bound to (the AAD binding itself is tested with the real keyring elsewhere).
import { sql } from 'kysely';
import type { WriteResult } from '@coffer/sdk/api';
import type { ChangeIntent } from '@coffer/server/audit/intents';
import { KekUsage } from '@coffer/server/keyring/usage';
import type { Changes } from '@coffer/server/secrets/changes';
import { SecretReadCache } from '@coffer/server/secrets/read-cache';
import type { WriteRequest } from '@coffer/server/secrets/secret-service';
import { writeGroup, type GroupDeps } from '@coffer/server/secrets/write-combiner';
import { describeContract, seedNamespace, seedSeal, unique } from './backends.js';

describeContract('write combiner', (backend) => {
  beforeAll(() => seedSeal(backend));

  const bound: Array<{ secretId: string; version: number }> = [];
  const singles: string[] = [];

  function deps(): GroupDeps {
    const changes: Changes = { cache: new SecretReadCache(100, 60_000), feed: { channel: undefined } as unknown as Changes['feed'] };
    return {
      db: backend.storage.db,
      secrets: backend.repos.secrets,
      keyring: {
        encryptValue: async (aad: { secretId: string; version: number }, kekVersion: number, plaintext: Uint8Array) => {
          bound.push({ secretId: aad.secretId, version: aad.version });
          return { kekVersion, wrappedDek: new Uint8Array([aad.version]), ciphertext: Uint8Array.from(plaintext) };
        },
      } as unknown as GroupDeps['keyring'],
      changes,
      usage: new KekUsage(100, 1_000_000),
      defaultMaxVersions: 10,
      onUsageLimit: () => undefined,
      // The single path, as SecretService.writeOne would be: here a plain one-write group of its own.
      one: async (namespace, path, req, intent) => {
        singles.push(path);
        const [w, settled] = waiting(path, req, intent);
        await writeGroup({ ...d, one: () => Promise.reject(new Error('nested')) }, namespace, [w]);
        return settled;
      },
    };
  }
  let d: GroupDeps;
  beforeAll(() => {
    d = deps();
  });

  type Outcome = { ok: WriteResult } | { err: unknown };
  function waiting(path: string, req: WriteRequest, intent?: () => ChangeIntent | null) {
    let resolve!: (r: WriteResult) => void;
    let reject!: (e: unknown) => void;
    const settled = new Promise<WriteResult>((res, rej) => ((resolve = res), (reject = rej)));
    settled.catch(() => undefined); // settled before its reader awaits it: not an unhandled rejection
    return [{ path, req, intent, resolve, reject }, settled] as const;
  }
  async function run(namespace: string, writes: Array<{ path: string; req: Partial<WriteRequest>; intent?: () => ChangeIntent | null }>): Promise<Outcome[]> {
    const made = writes.map((w) => waiting(w.path, { data: { v: 'x' }, type: 'kv', metadata: {}, ...w.req } as WriteRequest, w.intent));
    await writeGroup(d, namespace, made.map(([w]) => w));
    return Promise.all(made.map(([, p]) => p.then((ok) => ({ ok }), (err: unknown) => ({ err }))));
  }
  const versionOf = (o: Outcome) => ('ok' in o ? o.ok.version : undefined);
  const codeOf = (o: Outcome) => ('err' in o ? (o.err as { code?: string }).code : undefined);
  const intentOf = (requestId: string) => (): ChangeIntent => ({
    row: { requestId, owner: 'test', time: new Date(), draft: JSON.stringify({ request_id: requestId }) },
    refuse: () => Object.assign(new Error('audit unavailable'), { code: 'audit_unavailable' }),
    stored: () => undefined,
  });
  const intents = async (ids: string[]) =>
    (await sql<{ request_id: string }>`select request_id from audit_intents where request_id in (${sql.join(ids)})`.execute(backend.storage.db)).rows.map((r) => r.request_id).sort();

  it('judges check-and-set in order: the chain succeeds, a stale expectation is refused alone and takes no version', async () => {
    const ns = await seedNamespace(backend);
    const ids = Array.from({ length: 6 }, () => unique('req'));
    const out = await run(ns.name, [
      { path: 'a', req: { cas: 0 }, intent: intentOf(ids[0]!) }, // new: 1
      { path: 'a', req: { cas: 0 }, intent: intentOf(ids[1]!) }, // exists now: refused
      { path: 'a', req: { cas: 1 }, intent: intentOf(ids[2]!) }, // 2
      { path: 'b', req: {}, intent: intentOf(ids[3]!) }, // another secret: 1
      { path: 'a', req: { cas: 1 }, intent: intentOf(ids[4]!) }, // stale: refused
      { path: 'a', req: {}, intent: intentOf(ids[5]!) }, // 3
    ]);
    expect(out.map(versionOf)).toEqual([1, undefined, 2, 1, undefined, 3]);
    expect(out.map(codeOf)).toEqual([undefined, 'cas_mismatch', undefined, undefined, 'cas_mismatch', undefined]);
    expect(String((out[4] as { err: Error }).err.message)).toMatch(/current version is 2, not 1/);
    // Only applied writes left an intent; one commit: one time for all.
    expect(await intents(ids)).toEqual([ids[0], ids[2], ids[3], ids[5]].sort());
    expect(new Set(out.filter((o) => 'ok' in o).map((o) => (o as { ok: WriteResult }).ok.created_at)).size).toBe(1);
    expect((await backend.repos.secrets.find(ns.name, 'a', false))!.current_version).toBe(3);
    expect((await backend.repos.secrets.find(ns.name, 'b', false))!.current_version).toBe(1);
    // Four encryptions, one reservation of one block (100), not a block each.
    expect(Number((await sql<{ n: number }>`select encryptions as n from namespace_keys where namespace_id = ${ns.id} and version = 1`.execute(backend.storage.db)).rows[0]!.n)).toBe(100);
    // Each envelope was bound to its own version.
    const a = (await backend.repos.secrets.find(ns.name, 'a', false))!.id;
    expect(bound.filter((b) => b.secretId === a).map((b) => b.version)).toEqual([1, 2, 3]);
  });

  it('refuses every write of a group whose check-and-set all fail, and commits nothing (not even a new secret)', async () => {
    const ns = await seedNamespace(backend);
    const out = await run(ns.name, [
      { path: 'n', req: { cas: 4 } },
      { path: 'n', req: { cas: 1 } },
    ]);
    expect(out.map(codeOf)).toEqual(['cas_mismatch', 'cas_mismatch']);
    expect(await backend.repos.secrets.find(ns.name, 'n', false)).toBeUndefined();
  });

  it('applies max_versions from the write that sets it, pruning as the writes one after another would', async () => {
    const ns = await seedNamespace(backend);
    await run(ns.name, Array.from({ length: 5 }, () => ({ path: 'r', req: {} }))); // 1..5, max 10
    const out = await run(ns.name, [
      { path: 'r', req: { max_versions: 2 } }, // 6: keeps 5, 6
      { path: 'r', req: { max_versions: 10 } }, // 7: keeps up to 10 from here, but 1..4 are gone
      { path: 'r', req: {} }, // 8
    ]);
    expect(out.map(versionOf)).toEqual([6, 7, 8]);
    const secret = (await backend.repos.secrets.find(ns.name, 'r', false))!;
    expect(secret).toMatchObject({ current_version: 8, max_versions: 10 });
    expect((await backend.repos.secrets.history(secret.id)).map((v) => v.version)).toEqual([8, 7, 6, 5]);
  });

  it('sends the writes one by one when PostgreSQL refuses the statement: only the write it concerns fails', async () => {
    const ns = await seedNamespace(backend);
    const taken = unique('req');
    await run(ns.name, [{ path: 'f', req: {}, intent: intentOf(taken) }]);
    singles.length = 0;
    const fresh = [unique('req'), unique('req')];
    const out = await run(ns.name, [
      { path: 'f', req: {}, intent: intentOf(fresh[0]!) },
      { path: 'g', req: {}, intent: intentOf(taken) }, // its intent's request id is taken: the statement fails
      { path: 'f', req: {}, intent: intentOf(fresh[1]!) },
    ]);
    expect(singles).toEqual(['f', 'g', 'f']);
    expect(out.map(versionOf)).toEqual([2, undefined, 3]);
    expect('err' in out[1]!).toBe(true);
    expect(await intents(fresh)).toEqual([...fresh].sort());
    expect(await backend.repos.secrets.find(ns.name, 'g', false)).toBeUndefined();
  });

  it('answers every write of a group in a missing namespace with not_found', async () => {
    const out = await run(unique('missing'), [
      { path: 'x', req: {} },
      { path: 'y', req: { cas: 0 } },
    ]);
    expect(out.map(codeOf)).toEqual(['not_found', 'not_found']);
  });
});
