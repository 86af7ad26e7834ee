/**
 * Moves everything the root key wraps from one root key version to the next:
 * every column of the registry's ROOT_WRAPPED (storage/wrapped-tables.ts:
 * namespace KEKs, system keys, software BYOK private keys), in its order.
 * Runs inside the caller's transaction together with the seal_config update,
 * so a crash at any point leaves either every row under the old root (and the
 * old root in effect) or every row under the new one.
 */
import type { Transaction } from 'kysely';
import type { RewrapCounts } from '@coffer/sdk/api';
import { zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import type { Executor } from '../storage/executor.js';
import { rootWrappedRepo, type RootWrappedRow } from '../storage/repos/root-wrapped.js';
import type { Database } from '../storage/schema.js';
import { ROOT_WRAPPED, type RootWrappedTable } from '../storage/wrapped-tables.js';
import type { RootKey } from './root-key.js';
import { sealAad } from './seal-context.js';

/** How each registered table's AAD is built, and how its keys are named in errors. A new entry does not compile without one. */
export const ROOT_WRAPPED_AAD: { readonly [T in RootWrappedTable]: { aad(values: RootWrappedRow['values'], rootVersion: number): Uint8Array; what(values: RootWrappedRow['values']): string } } = {
  namespace_keys: {
    aad: (v, root) => aad.kek(String(v.namespace_id), Number(v.version), root),
    what: () => 'a namespace key',
  },
  system_keys: {
    aad: (v, root) => aad.systemKey(String(v.name), Number(v.version), root),
    what: (v) => `system key ${String(v.name)}`,
  },
  import_keys: {
    aad: (v, root) => sealAad.importKey(String(v.id), root),
    what: () => 'an import wrapping key',
  },
};

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
  const repo = rootWrappedRepo(db);
  for (const entry of ROOT_WRAPPED) {
    const context = ROOT_WRAPPED_AAD[entry.table];
    for (const row of await repo.rows(entry, onlyVersion)) {
      const what = context.what(row.values);
      const wrapped = await rewrapKey(from, to, row.wrapped, context.aad(row.values, row.rootVersion), context.aad(row.values, to.version), what);
      await repo.replace(entry, row, wrapped, to.version);
      counts[entry.count] += 1;
    }
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
