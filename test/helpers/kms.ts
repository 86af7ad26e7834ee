// What the KMS suites do behind Coffer's back, as a database administrator could: read a named
// key's version row and swap or flip its wrapped material. The server sees such an edit when its
// KMS key cache lets the key go (TTL); these helpers drop the cache at once instead.
import type { RunningServer } from '@coffer/server/server';

export function kmsTampering(server: () => RunningServer) {
  const db = () => server().core.db;
  /** A key version's row, by namespace and key name. */
  const versionRow = (ns: string, key: string, version: number) =>
    db()
      .selectFrom('kms_key_versions as v')
      .innerJoin('kms_keys as k', 'k.id', 'v.key_id')
      .innerJoin('namespaces as n', 'n.id', 'k.namespace_id')
      .select(['v.key_id', 'v.version', 'v.kek_version', 'v.wrapped_material', 'n.id as namespace_id'])
      .where('n.name', '=', ns)
      .where('k.name', '=', key)
      .where('v.version', '=', version)
      .executeTakeFirstOrThrow();
  /** Awaits an edit made straight in the database, then drops the server's KMS key cache. */
  const behindTheBack = async (edit: Promise<unknown>) => {
    await edit;
    server().core.services().kms.cache.clear();
  };
  /** Replaces a key version's wrapped material. */
  const setMaterial = (row: { key_id: string; version: number }, wrapped: Uint8Array) =>
    behindTheBack(db().updateTable('kms_key_versions').set({ wrapped_material: wrapped }).where('key_id', '=', row.key_id).where('version', '=', row.version).execute());
  return { versionRow, behindTheBack, setMaterial };
}
