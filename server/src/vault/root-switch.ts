/**
 * Puts a new root key version in effect (rotation, Shamir rekey, seal
 * migration, root import): every key the root wraps is rewrapped and
 * seal_config updated in one transaction, so a crash leaves the old root or
 * the new one, fully. Then the running keyring switches, rows inserted under
 * the old root meanwhile are caught up, and the old root is retired.
 */
import type { Transaction } from 'kysely';
import type { RewrapCounts } from '@coffer/sdk/api';
import { changeEvents, publishEvent } from '../cluster/events.js';
import { aad } from '../crypto/context.js';
import { conflict } from '../errors.js';
import { rewrapStragglers, rewrapUnderNewRoot } from '../seal/rewrap.js';
import type { RootKey } from '../seal/root-key.js';
import type { NewRootKey, Seal } from '../seal/seal.js';
import { ROOT_CHECK_PLAINTEXT } from '../seal/seal-context.js';
import type { RootSwitchUpdate } from '../storage/repos/seal-config.js';
import type { Database } from '../storage/schema.js';
import type { RotateRootResult } from './types.js';
import type { Vault } from './vault.js';

/** The caller retires `previous` (it may still be needed until then, e.g. as a recovery key). */
export async function switchRoot(
  vault: Vault,
  next: RootKey,
  configUpdate: RootSwitchUpdate,
  beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<{ previous: RootKey; rewrapped: RewrapCounts }> {
  const services = vault.services();
  const current = services.keyring.rootKey;
  const { repos, changes } = vault.deps;
  let rewrapped: RewrapCounts | undefined;
  await vault.db.transaction().execute(async (trx) => {
    const inEffect = await repos.sealConfig.lockRootVersion(trx);
    if (inEffect !== current.version) throw conflict('conflict', 'the root key changed meanwhile (another server rotated it): retry');
    rewrapped = await rewrapUnderNewRoot(trx, current, next);
    await repos.sealConfig.switchRoot(configUpdate, next.version, trx);
    // Other servers sharing the database follow the new root (see follow-root.ts).
    await publishEvent(changes, trx, changeEvents.root(next.version));
    await beforeCommit?.(trx);
  });
  const previous = services.keyring.replaceRoot(next);
  const late = await rewrapStragglers(vault.db, previous, next);
  rewrapped!.keks += late.keks;
  rewrapped!.system_keys += late.system_keys;
  await vault.load();
  return { previous, rewrapped: rewrapped! };
}

/**
 * Puts a root key the seal stores (generated or imported) in effect: if the switch fails the new
 * object is removed, and once it succeeded the old one is.
 */
export async function switchToStoredRoot(
  vault: Vault,
  seal: Seal,
  fresh: NewRootKey,
  version: number,
  beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<RotateRootResult> {
  const next = fresh.root;
  let switched;
  try {
    switched = await switchRoot(vault, next, { root_check: await next.wrapKey(ROOT_CHECK_PLAINTEXT, aad.rootCheck(version)), hsm_key_label: fresh.label }, beforeCommit);
  } catch (err) {
    await fresh.discard();
    throw err;
  }
  await seal.retire(switched.previous);
  return { seal_type: seal.type, root_version: version, rewrapped: switched.rewrapped, key_label: fresh.label ?? undefined };
}
