/**
 * Associated data of what the seal layer wraps besides KEKs and system keys
 * (those are in crypto/context.ts). Same encoding: a JSON array, so no two
 * contexts can collide whatever the ids contain.
 */
const encoder = new TextEncoder();
const encode = (parts: Array<string | number>) => encoder.encode(JSON.stringify(['coffer/v1', ...parts]));

export const sealAad = {
  /** The fixed check value proving that a reconstructed recovery key is the right one. */
  recoveryCheck: () => encode(['recovery-check']),
  /** A BYOK import's RSA private key (software seal), wrapped by a root key version. */
  importKey: (id: string, rootVersion: number) => encode(['import-key', id, rootVersion]),
  /** A Shamir rekey's next root key (version `next`), wrapped by the root key in effect (`current`). */
  pendingRoot: (next: number, current: number) => encode(['pending-root', next, current]),
};

/** Encrypted under the root key (with aad.rootCheck) as seal_config.root_check: proves a rebuilt or found root key is this server's. */
export const ROOT_CHECK_PLAINTEXT = encoder.encode('coffer root key check v1');
export const RECOVERY_CHECK_PLAINTEXT = encoder.encode('coffer recovery key check v1');
