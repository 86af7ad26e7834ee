/**
 * POST /v1/sys/init: the root key is created by the configured seal, the
 * operators' shares are computed, and the system keys and the first root
 * token are stored in one transaction with the seal configuration. The shares
 * and the token are returned once and stored nowhere.
 *
 * What the shares rebuild depends on the seal: the root key itself (Shamir),
 * or a separate recovery key when the seal stores the root key (PKCS#11). A
 * seal that unseals by itself is unsealed right away; otherwise the server
 * stays sealed, as Vault does. A stored key object is reached before anything
 * is written (unreachable → 503, still uninitialised) and removed again if
 * the init does not commit.
 */
import type { Transaction } from 'kysely';
import { changeEvents, publishEvent } from '../cluster/events.js';
import { TOKEN_SIGNING_KEY, newAccessor, rootTokenClaims, signToken } from '../auth/tokens.js';
import { generateKeyMaterial, sealWithKey, zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError, conflict } from '../errors.js';
import type { NewRootKey } from '../seal/seal.js';
import { RECOVERY_CHECK_PLAINTEXT, ROOT_CHECK_PLAINTEXT, sealAad } from '../seal/seal-context.js';
import { encodeShare, splitRootKey, validateShareConfig } from '../seal/shamir.js';
import { isUniqueViolation } from '../storage/errors.js';
import type { Database } from '../storage/schema.js';
import type { InitResult } from './types.js';
import type { Vault } from './vault.js';

export function init(
  vault: Vault,
  shares: number,
  threshold: number,
  /** Runs inside the init transaction just before commit (the audit entry): if it throws, nothing is initialised. */
  beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<InitResult> {
  return vault.exclusive(async () => {
    const problem = validateShareConfig(shares, threshold);
    if (problem) throw new CofferError('invalid_request', problem);
    await vault.load();
    if (vault.config) throw conflict('already_initialized', 'Coffer is already initialised');
    const seal = vault.deps.seals.forInit;
    const { recoveryKeys, storedKeys, autoUnseal } = seal.capabilities;
    const rootVersion = 1;
    const fresh = await seal.generateRoot(rootVersion, 'refuse');
    // What the operators' shares rebuild: a recovery key, or the root key itself.
    const shareKey = recoveryKeys ? generateKeyMaterial() : fresh.bytes;
    if (!shareKey) throw new Error(`the ${seal.type} seal neither has recovery keys nor hands out its root key`);
    const signingKey = generateKeyMaterial();
    let shareBytes: Uint8Array[] = [];
    let unsealed = false;
    try {
      // Shares are computed before anything is stored: a failure here leaves the server uninitialised.
      shareBytes = await splitRootKey(shareKey, shares, threshold);
      const recoveryCheck = recoveryKeys ? sealWithKey(shareKey, RECOVERY_CHECK_PLAINTEXT, sealAad.recoveryCheck()) : null;
      const rootCheck = await fresh.root.wrapKey(ROOT_CHECK_PLAINTEXT, aad.rootCheck(rootVersion));
      const wrappedSigningKey = await fresh.root.wrapKey(signingKey, aad.systemKey(TOKEN_SIGNING_KEY, 1, rootVersion));
      const accessor = newAccessor();
      const rootToken = signToken(signingKey, rootTokenClaims(accessor));
      const { repos } = vault.deps;
      await vault.db.transaction().execute(async (trx) => {
        await repos.sealConfig.insert(
          {
            seal_type: seal.type,
            shares,
            threshold,
            root_version: rootVersion,
            root_check: rootCheck,
            ...(fresh.label !== null ? { hsm_key_label: fresh.label } : {}),
            ...(recoveryCheck ? { recovery_check: recoveryCheck } : {}),
          },
          trx,
        );
        // What every init stores besides the seal configuration: the wrapped token-signing key and the first root token's row.
        await repos.systemKeys.insert({ name: TOKEN_SIGNING_KEY, version: 1, wrapped_key: wrappedSigningKey, root_version: rootVersion }, trx);
        await repos.tokens.insertRoot(accessor, trx);
        // Servers started before this init learn of it at the commit (cluster/dispatch.ts).
        await publishEvent(vault.deps.changes, trx, changeEvents.init());
        await beforeCommit?.(trx);
      });
      await vault.load();
      vault.deps.onTransition?.('initialised', { seal_type: seal.type, shares, threshold });
      if (autoUnseal) {
        // Unseal right away: the seal is here, nobody needs to type a share.
        await vault.unsealWith(fresh.root);
        unsealed = true;
        vault.sealError = null;
      }
      const encoded = shareBytes.map(encodeShare);
      // The recovery variant of the answer names the one seal with recovery keys.
      return recoveryKeys
        ? { seal_type: 'pkcs11', recovery_shares: encoded, recovery_threshold: threshold, root_token: rootToken }
        : { shares: encoded, threshold, root_token: rootToken };
    } catch (err) {
      if (storedKeys) await discardUnlessCommitted(vault, fresh);
      if (isUniqueViolation(err)) throw conflict('already_initialized', 'Coffer is already initialised');
      throw err;
    } finally {
      zeroize(shareKey, signingKey, ...shareBytes);
      if (!unsealed) fresh.root.destroy();
    }
  });
}

/**
 * Nothing was committed (or unsealing failed after commit, which load() shows): drop the
 * generated key only if the database does not name it.
 */
async function discardUnlessCommitted(vault: Vault, fresh: NewRootKey): Promise<void> {
  await vault.load().catch(() => undefined);
  if (vault.config?.hsmKeyLabel !== fresh.label) await fresh.discard();
}
