/**
 * POST /v1/sys/seal-migrate, between a seal whose root key the shares rebuild
 * (Shamir) and one that stores it (PKCS#11), with the threshold of the
 * operators' shares.
 *
 * Into a storing seal: a root key is generated in it, everything is
 * rewrapped, and the old root key becomes the recovery key (the same shares,
 * now recovery shares, as in Vault). Out of it: the recovery key becomes the
 * root key (the same shares unseal), and the stored object is destroyed.
 */
import type { Transaction } from 'kysely';
import { sealWithKey, zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError, conflict } from '../errors.js';
import { InMemoryRootKey } from '../seal/root-key.js';
import type { SealType } from '../seal/seal.js';
import { RECOVERY_CHECK_PLAINTEXT, ROOT_CHECK_PLAINTEXT, sealAad } from '../seal/seal-context.js';
import type { Database } from '../storage/schema.js';
import { switchRoot } from './root-switch.js';
import { keyFromShares } from './shares.js';
import type { SealMigrateResult } from './types.js';
import type { Vault } from './vault.js';

export function migrateSeal(
  vault: Vault,
  to: SealType,
  shareTexts: string[],
  beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<SealMigrateResult> {
  return vault.exclusive(async () => {
    vault.services();
    const config = vault.config!;
    if (config.sealType === to) throw conflict('conflict', `the server already uses the ${to} seal`);
    const from = vault.sealOf(config);
    const target = vault.deps.seals.of(to);
    const version = config.rootVersion + 1;
    if (target.capabilities.storedKeys) {
      const oldKey = await keyFromShares(shareTexts, config.threshold, config.rootCheck, aad.rootCheck(config.rootVersion), ROOT_CHECK_PLAINTEXT, 'root');
      try {
        const fresh = await target.generateRoot(version, 'replace');
        const next = fresh.root;
        let switched;
        try {
          switched = await switchRoot(
            vault,
            next,
            {
              seal_type: target.type,
              root_check: await next.wrapKey(ROOT_CHECK_PLAINTEXT, aad.rootCheck(version)),
              hsm_key_label: fresh.label,
              recovery_check: sealWithKey(oldKey, RECOVERY_CHECK_PLAINTEXT, sealAad.recoveryCheck()),
            },
            beforeCommit,
          );
        } catch (err) {
          await fresh.discard();
          throw err;
        }
        await from.retire(switched.previous);
        return {
          seal_type: target.type,
          root_version: version,
          rewrapped: switched.rewrapped,
          message: `the HSM now seals this server and unseals it at start; the ${config.shares} unseal shares are now recovery shares (threshold ${config.threshold})`,
        };
      } finally {
        zeroize(oldKey);
      }
    }
    if (!config.recoveryCheck) throw new CofferError('conflict', 'this server has no recovery key');
    const recoveryKey = await keyFromShares(shareTexts, config.threshold, config.recoveryCheck, sealAad.recoveryCheck(), RECOVERY_CHECK_PLAINTEXT, 'recovery');
    const next = new InMemoryRootKey(Uint8Array.from(recoveryKey), version);
    try {
      const switched = await switchRoot(
        vault,
        next,
        {
          seal_type: target.type,
          root_check: sealWithKey(recoveryKey, ROOT_CHECK_PLAINTEXT, aad.rootCheck(version)),
          hsm_key_label: null,
          recovery_check: null,
          root_chain: await vault.services().keyring.rootKey.wrapKey(recoveryKey, sealAad.pendingRoot(version, config.rootVersion)),
        },
        beforeCommit,
      ).catch((err: unknown) => {
        next.destroy();
        throw err;
      });
      await from.retire(switched.previous);
      return {
        seal_type: target.type,
        root_version: version,
        rewrapped: switched.rewrapped,
        message: `the ${config.shares} recovery shares are now unseal shares (threshold ${config.threshold}); remove the PKCS#11 settings (COFFER_SEAL) before the next start`,
      };
    } finally {
      zeroize(recoveryKey);
    }
  });
}
