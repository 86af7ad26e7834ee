/**
 * Moves everything the root key wraps (namespace KEKs, system keys, software
 * BYOK private keys) from one root key version to the next. Runs inside the
 * caller's transaction together with the seal_config update, so a crash at any
 * point leaves either every row under the old root (and the old root in
 * effect) or every row under the new one.
 */
import type { Transaction } from 'kysely';
import type { RewrapCounts } from '@coffer/sdk/api';
import { zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import type { Executor } from '../storage/executor.js';
import type { Database } from '../storage/schema.js';
import type { RootKey } from './root-key.js';
import { sealAad } from './seal-context.js';

export async function rewrapUnderNewRoot(trx: Transaction<Database>, from: RootKey, to: RootKey): Promise<RewrapCounts> {
  return rewrapRows(trx, from, to, null);
}

/**
 * After the switch: rows another request inserted under the old root while the
 * rewrap transaction ran (a namespace created at that moment). Rewrapped one
 * by one, each only if still under the old version.
 */
export async function rewrapStragglers(db: Executor, from: RootKey, to: RootKey): Promise<RewrapCounts> {
  return rewrapRows(db, from, to, from.version);
}

async function rewrapRows(db: Executor, from: RootKey, to: RootKey, onlyVersion: number | null): Promise<RewrapCounts> {
  const counts: RewrapCounts = { keks: 0, system_keys: 0, import_keys: 0 };
  let keks = db.selectFrom('namespace_keys').select(['namespace_id', 'version', 'wrapped_key', 'root_version']).where('wrapped_key', 'is not', null);
  if (onlyVersion !== null) keks = keks.where('root_version', '=', onlyVersion);
  for (const row of await keks.execute()) {
    const wrapped = await rewrapKey(from, to, row.wrapped_key!, aad.kek(row.namespace_id, row.version, row.root_version), aad.kek(row.namespace_id, row.version, to.version), 'a namespace key');
    await db
      .updateTable('namespace_keys')
      .set({ wrapped_key: wrapped, root_version: to.version })
      .where('namespace_id', '=', row.namespace_id)
      .where('version', '=', row.version)
      .where('root_version', '=', row.root_version)
      .execute();
    counts.keks += 1;
  }
  let sys = db.selectFrom('system_keys').select(['name', 'version', 'wrapped_key', 'root_version']);
  if (onlyVersion !== null) sys = sys.where('root_version', '=', onlyVersion);
  for (const row of await sys.execute()) {
    const wrapped = await rewrapKey(from, to, row.wrapped_key, aad.systemKey(row.name, row.version, row.root_version), aad.systemKey(row.name, row.version, to.version), `system key ${row.name}`);
    await db
      .updateTable('system_keys')
      .set({ wrapped_key: wrapped, root_version: to.version })
      .where('name', '=', row.name)
      .where('version', '=', row.version)
      .where('root_version', '=', row.root_version)
      .execute();
    counts.system_keys += 1;
  }
  let imports = db
    .selectFrom('import_keys')
    .select(['id', 'wrapped_private_key', 'root_version'])
    .where('wrapped_private_key', 'is not', null)
    .where('used_at', 'is', null);
  if (onlyVersion !== null) imports = imports.where('root_version', '=', onlyVersion);
  for (const row of await imports.execute()) {
    const wrapped = await rewrapKey(from, to, row.wrapped_private_key!, sealAad.importKey(row.id, row.root_version!), sealAad.importKey(row.id, to.version), 'an import wrapping key');
    await db.updateTable('import_keys').set({ wrapped_private_key: wrapped, root_version: to.version }).where('id', '=', row.id).execute();
    counts.import_keys += 1;
  }
  return counts;
}

/** One key moved from the old root to the new one; the plaintext key exists only between the two calls. */
async function rewrapKey(from: RootKey, to: RootKey, wrapped: Uint8Array, fromAad: Uint8Array, toAad: Uint8Array, what: string): Promise<Uint8Array> {
  const key = await from.unwrapKey(wrapped, fromAad, what);
  try {
    return await to.wrapKey(key, toAad);
  } finally {
    zeroize(key);
  }
}
