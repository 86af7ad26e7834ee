/**
 * POST /v1/sys/generate-root: regenerates a root token from the operators'
 * shares (the old one may have been revoked or lost). Shares are collected
 * like an unseal; when the threshold is met and they rebuild this server's key
 * (the recovery key, when the seal has one), a new root token is issued to the
 * request that supplied the last share.
 */
import { openWithKey, zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError } from '../errors.js';
import { sealAad } from '../seal/seal-context.js';
import type { GenerateRootProgress } from './types.js';
import type { Vault } from './vault.js';

/** One share, or null to abandon the collection. */
export function generateRoot(vault: Vault, shareText: string | null): Promise<GenerateRootProgress> {
  return vault.exclusive(async () => {
    const services = vault.services();
    const config = vault.config;
    if (!config) throw new CofferError('not_initialized', 'Coffer is not initialised yet (POST /v1/sys/init)');
    const slot = vault.shares.generateRoot;
    if (shareText === null) {
      slot.reset();
      return { progress: 0, threshold: config.threshold, complete: false };
    }
    const candidate = await slot.add(shareText, config.threshold);
    if (!candidate) return { progress: slot.progress, threshold: config.threshold, complete: false };
    try {
      // Recovery-key seals: the operators hold recovery shares (the root key never leaves the HSM).
      if (vault.sealOf(config).capabilities.recoveryKeys && config.recoveryCheck) openWithKey(candidate, config.recoveryCheck, sealAad.recoveryCheck(), 'the recovery key check');
      else openWithKey(candidate, config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check');
    } catch {
      throw new CofferError('invalid_shares', 'the shares do not reconstruct this server\'s root key; progress was reset');
    } finally {
      zeroize(candidate);
    }
    const issued = await services.tokens.issueRoot();
    return { progress: config.threshold, threshold: config.threshold, complete: true, root_token: issued };
  });
}
