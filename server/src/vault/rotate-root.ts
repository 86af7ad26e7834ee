/**
 * POST /v1/sys/rotate-root, its verification, and BYOK root import.
 *
 * A seal that stores the root key (PKCS#11) makes a new key object and puts it
 * in effect at once; the old one is destroyed after the switch committed.
 * Otherwise the operators' shares are the root key, and rotating it is a
 * rekey in two steps: the threshold of current shares proves the operators
 * agree and a new root key is split into new shares (returned once), but only
 * the threshold of the NEW shares puts it in effect, so a lost response loses
 * nothing.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Transaction } from 'kysely';
import { generateKeyMaterial, sealWithKey, zeroize, type KeyMaterial } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError } from '../errors.js';
import type { Pkcs11Token } from '../seal/pkcs11.js';
import { InMemoryRootKey } from '../seal/root-key.js';
import { ROOT_CHECK_PLAINTEXT, sealAad } from '../seal/seal-context.js';
import { combineShareTexts, encodeShare, splitRootKey, validateShareConfig } from '../seal/shamir.js';
import type { Database } from '../storage/schema.js';
import { switchRoot, switchToStoredRoot } from './root-switch.js';
import { keyFromShares } from './shares.js';
import type { RotateRootResult } from './types.js';
import type { Vault } from './vault.js';

export function rotateRoot(
  vault: Vault,
  input: { shares?: string[] | undefined; newShares?: number | undefined; newThreshold?: number | undefined },
  beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<RotateRootResult> {
  return vault.exclusive(async () => {
    vault.services();
    const config = vault.config!;
    const version = config.rootVersion + 1;
    const seal = vault.sealOf(config);
    if (seal.capabilities.storedKeys) {
      const fresh = await seal.generateRoot(version, 'replace');
      return switchToStoredRoot(vault, seal, fresh, version, beforeCommit);
    }
    const shares = input.newShares ?? config.shares;
    const threshold = input.newThreshold ?? (input.newShares === undefined ? config.threshold : Math.min(config.threshold, shares));
    const problem = validateShareConfig(shares, threshold);
    if (problem) throw new CofferError('invalid_request', problem);
    if (!input.shares || input.shares.length === 0) {
      throw new CofferError('invalid_shares', `rotating a Shamir root key needs ${config.threshold} of the current shares ("shares": [...])`);
    }
    zeroize(await keyFromShares(input.shares, config.threshold, config.rootCheck, aad.rootCheck(config.rootVersion), ROOT_CHECK_PLAINTEXT, 'root'));
    // Step 1 of 2: the next root key is generated and kept wrapped by the current one; nothing
    // else changes. If this response is lost, the old shares still work and this can be repeated.
    const keyBytes = generateKeyMaterial();
    let shareBytes: Uint8Array[] = [];
    try {
      shareBytes = await splitRootKey(keyBytes, shares, threshold);
      const current = vault.services().keyring.rootKey;
      const pending = await current.wrapKey(keyBytes, sealAad.pendingRoot(version, current.version));
      await vault.db.transaction().execute(async (trx) => {
        await vault.deps.repos.sealConfig.setPendingRoot({ root: pending, shares, threshold }, current.version, trx);
        await beforeCommit?.(trx);
      });
      return { seal_type: seal.type, root_version: version, state: 'pending_verification', shares: shareBytes.map(encodeShare), threshold };
    } finally {
      zeroize(keyBytes, ...shareBytes);
    }
  });
}

/**
 * Rekey, step 2: the threshold of the NEW shares proves the operators hold
 * them; then the pending root key is put in effect (every key rewrapped in one
 * transaction) and the old one forgotten. A crash before the commit leaves the
 * old root in effect and the rekey still pending (verify again).
 */
export function verifyRotateRoot(vault: Vault, shareTexts: string[], beforeCommit?: (trx: Transaction<Database>) => Promise<void>): Promise<RotateRootResult> {
  return vault.exclusive(async () => {
    const services = vault.services();
    const row = await vault.deps.repos.sealConfig.findPendingRoot();
    if (!row.pending_root || row.pending_shares === null || row.pending_threshold === null) {
      throw new CofferError('conflict', 'no root rotation is waiting for verification (POST /v1/sys/rotate-root first)');
    }
    const current = services.keyring.rootKey;
    const version = row.root_version + 1;
    const pendingKey = await current.unwrapKey(row.pending_root, sealAad.pendingRoot(version, current.version), 'the pending root key');
    let candidate: KeyMaterial | null = null;
    try {
      candidate = await combineShareTexts(shareTexts, row.pending_threshold);
      if (!candidate) throw new CofferError('invalid_shares', `${row.pending_threshold} distinct new shares are needed`);
      if (candidate.length !== pendingKey.length || !timingSafeEqual(candidate, pendingKey)) {
        throw new CofferError('invalid_shares', 'these are not the new shares of the pending root rotation');
      }
      const next = new InMemoryRootKey(Uint8Array.from(pendingKey), version);
      const rootCheck = sealWithKey(pendingKey, ROOT_CHECK_PLAINTEXT, aad.rootCheck(version));
      const switched = await switchRoot(
        vault,
        next,
        { shares: row.pending_shares, threshold: row.pending_threshold, root_check: rootCheck, hsm_key_label: null, root_chain: row.pending_root },
        beforeCommit,
      ).catch((err: unknown) => {
        next.destroy();
        throw err;
      });
      switched.previous.destroy();
      return { seal_type: 'shamir', root_version: version, state: 'completed', rewrapped: switched.rewrapped, threshold: row.pending_threshold };
    } finally {
      zeroize(pendingKey, candidate);
    }
  });
}

/**
 * BYOK root import (a seal with key import): `unwrapInto(token, label)`
 * unwraps the customer's key inside the token as the next root key version;
 * everything is rewrapped under it as in a rotation.
 */
export function importRoot(
  vault: Vault,
  unwrapInto: (token: Pkcs11Token, label: string) => Promise<Buffer>,
  beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<RotateRootResult> {
  return vault.exclusive(async () => {
    vault.services();
    const config = vault.config!;
    const seal = vault.sealOf(config);
    if (!seal.capabilities.keyImport) throw new CofferError('invalid_request', 'importing the root key needs the PKCS#11 seal (with Shamir, rotate-root makes a new one)');
    const version = config.rootVersion + 1;
    const fresh = await seal.importRoot(version, unwrapInto);
    return switchToStoredRoot(vault, seal, fresh, version, beforeCommit);
  });
}
