/**
 * Server-internal keys (token signing, audit HMAC) live wrapped by the root
 * key in system_keys; the keyring unwraps them at unseal.
 */
import { generateKeyMaterial, zeroize, type KeyMaterial } from '../crypto/aead.js';
import type { SystemKeysRepo } from '../storage/repos/system-keys.js';
import type { Keyring } from './keyring.js';

/**
 * Unwraps a system key, creating it on first use (servers initialised before
 * the key existed get it at their next unseal; concurrent servers converge on
 * whichever row was inserted first).
 */
export async function openSystemKey(repo: SystemKeysRepo, keyring: Keyring, name: string): Promise<KeyMaterial> {
  let row = await repo.latest(name);
  if (!row) {
    const fresh = generateKeyMaterial();
    try {
      const wrapped = await keyring.wrapSystemKey(name, 1, fresh);
      await repo.insertIfAbsent({ name, version: 1, wrapped_key: wrapped, root_version: keyring.rootVersion });
    } finally {
      zeroize(fresh);
    }
    row = await repo.latest(name);
    if (!row) throw new Error(`system key ${name} could not be created`);
  }
  return keyring.unwrapSystemKey(row.name, row.version, row.wrapped_key, row.root_version);
}
