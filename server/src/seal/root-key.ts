/**
 * The root key seals every KEK and system key. Implementations differ in where
 * it lives: process memory after a Shamir unseal, or inside an HSM where it
 * never leaves. Callers see only wrap/unwrap of key material under an AAD.
 */
import { openWithKey, sealWithKey, zeroize, type KeyMaterial } from '../crypto/aead.js';

export interface RootKey {
  readonly version: number;
  wrapKey(key: KeyMaterial, aad: Uint8Array): Promise<Uint8Array>;
  /** Throws IntegrityError when the wrapped key or its context was altered. */
  unwrapKey(wrapped: Uint8Array, aad: Uint8Array, what: string): Promise<KeyMaterial>;
  /** Forgets the key (zeroes it where it is held in process memory). */
  destroy(): void;
}

/** A root key held in process memory (software/Shamir seal). */
export class InMemoryRootKey implements RootKey {
  #key: KeyMaterial | null;

  constructor(
    key: KeyMaterial,
    readonly version: number,
  ) {
    this.#key = key;
  }

  private get key(): KeyMaterial {
    if (!this.#key) throw new Error('root key was destroyed');
    return this.#key;
  }

  async wrapKey(key: KeyMaterial, aad: Uint8Array): Promise<Uint8Array> {
    return sealWithKey(this.key, key, aad);
  }

  async unwrapKey(wrapped: Uint8Array, aad: Uint8Array, what: string): Promise<KeyMaterial> {
    return openWithKey(this.key, wrapped, aad, what);
  }

  destroy(): void {
    zeroize(this.#key);
    this.#key = null;
  }
}
