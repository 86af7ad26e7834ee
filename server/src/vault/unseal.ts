/**
 * POST /v1/sys/unseal. With the operators' shares: when the threshold is met
 * the key is rebuilt and checked against the stored check value; a wrong share
 * is detected there, progress resets, and nothing is unsealed. A seal that
 * unseals by itself (PKCS#11) does so at start-up and on `{}`; after an
 * operator sealed it, only the recovery shares (or a restart) open it again.
 */
import { openWithKey, zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError } from '../errors.js';
import { InMemoryRootKey } from '../seal/root-key.js';
import type { Seal } from '../seal/seal.js';
import { sealAad } from '../seal/seal-context.js';
import type { SealConfig } from '../storage/repos/seal-config.js';
import type { SealStatus } from './types.js';
import type { Vault } from './vault.js';

const notInitialized = () => new CofferError('not_initialized', 'Coffer is not initialised yet (POST /v1/sys/init)');

/** Accepts one share. */
export function unseal(vault: Vault, shareText: string): Promise<SealStatus> {
  return vault.exclusive(async () => {
    if (!vault.config) await vault.load();
    const config = vault.config;
    if (!config) throw notInitialized();
    if (vault.unsealed) return vault.status();
    const seal = vault.sealOf(config);
    if (seal.capabilities.autoUnseal) {
      // Recovery shares unseal (with the HSM) a server an operator sealed; otherwise {} retries the HSM.
      if (!vault.sealedByOperator || !config.recoveryCheck) {
        throw new CofferError('invalid_request', 'this server is sealed by its HSM: shares do not unseal it; POST /v1/sys/unseal {} retries the HSM');
      }
      const recovered = await vault.shares.unseal.add(shareText, config.threshold);
      if (!recovered) return vault.status();
      try {
        openWithKey(recovered, config.recoveryCheck, sealAad.recoveryCheck(), 'the recovery key check');
      } catch {
        throw new CofferError('invalid_shares', 'the shares do not reconstruct this server\'s recovery key; unseal progress was reset');
      } finally {
        zeroize(recovered);
      }
      return unsealWithStoredRoot(vault, seal, config);
    }
    const candidate = await vault.shares.unseal.add(shareText, config.threshold);
    if (!candidate) return vault.status();
    try {
      openWithKey(candidate, config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check');
    } catch {
      zeroize(candidate);
      throw new CofferError('invalid_shares',
        'the shares do not reconstruct this server\'s root key (a share is wrong or belongs to another Coffer); unseal progress was reset',
      );
    }
    await vault.unsealWith(new InMemoryRootKey(candidate, config.rootVersion));
    return vault.status();
  });
}

/** Abandons a partial unseal. */
export function resetUnseal(vault: Vault): Promise<SealStatus> {
  return vault.exclusive(async () => {
    vault.shares.unseal.reset();
    return vault.status();
  });
}

/**
 * Auto-unseal: with the root key the seal stores, checked against the stored
 * check value. Called at start-up and by POST /v1/sys/unseal {}. On any
 * failure the server stays sealed, nothing is written, and the reason is in
 * the seal status and the thrown error.
 */
export function autoUnseal(vault: Vault): Promise<SealStatus> {
  return vault.exclusive(async () => {
    await vault.load();
    const config = vault.config;
    if (!config) throw notInitialized();
    const seal = vault.sealOf(config);
    if (!seal.capabilities.autoUnseal) throw new CofferError('invalid_request', 'this server uses the Shamir seal: unseal it with shares');
    if (vault.unsealed) return vault.status();
    if (vault.sealedByOperator) {
      throw new CofferError('invalid_request',
        'an operator sealed this server: unseal it with the recovery shares ({"share": …}, threshold times) or restart it',
      );
    }
    return unsealWithStoredRoot(vault, seal, config);
  });
}

/** Opens the services with the root key the seal stores (inside `exclusive`). */
async function unsealWithStoredRoot(vault: Vault, seal: Seal, config: SealConfig): Promise<SealStatus> {
  try {
    const root = await seal.unsealRoot(config);
    await vault.unsealWith(root);
    vault.sealError = null;
    vault.sealedByOperator = false;
    await seal.removeOlderRoots(config.rootVersion);
    return vault.status();
  } catch (err) {
    vault.sealError = err instanceof Error ? err.message : String(err);
    // Reconnect next time: the token may come back (or be reconfigured).
    seal.disconnect();
    throw err;
  }
}
