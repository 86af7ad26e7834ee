/**
 * Another server sharing the database rotated or migrated the root key (a
 * change-feed event, or a KEK row under a newer root version). Follow it: the
 * seal finds the new root (a stored key by its label; a software root by
 * unwrapping it with the one this server holds, seal_config.root_chain). If
 * that is impossible (it moved on twice, or the HSM is unreachable), seal:
 * never keep serving with a root key that is no longer in effect.
 */
import { autoUnseal } from './unseal.js';
import type { Vault } from './vault.js';

export function followRoot(vault: Vault): Promise<void> {
  return vault.exclusive(async () => {
    const services = vault.unsealed;
    await vault.load();
    const config = vault.config;
    if (!services || !config) return;
    const current = services.keyring.rootKey;
    if (config.rootVersion <= current.version) return;
    try {
      const next = await vault.sealOf(config).followRoot(config, current);
      const previous = services.keyring.replaceRoot(next);
      // Forgets it here only: a stored key object is removed by the server that switched.
      previous.destroy();
    } catch (err) {
      vault.sealError = `the root key changed on another server and this one could not follow (${(err as Error).message}): unseal it again`;
      vault.dropKeys();
      vault.deps.onTransition?.('sealed', { reason: 'could not follow a root key change made by another server' });
    }
  });
}

/**
 * Another server initialised the vault (a change-feed event, or a status request that looked
 * while uninitialised): show it as initialised and sealed, and with a seal that unseals by
 * itself, unseal in the background, as a restart would. `onError` hears a failed auto-unseal
 * (the reason is also in the seal status).
 */
export async function followInit(vault: Vault, opts: { force?: boolean; onError?: (err: unknown) => void } = {}): Promise<void> {
  const found = await vault.lookForInit(opts.force ?? true);
  if (found && vault.isSealed && vault.status().recovery_seal) void autoUnseal(vault).catch((err: unknown) => opts.onError?.(err));
}
