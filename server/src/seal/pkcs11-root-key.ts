/**
 * The root key inside a PKCS#11 token. Wrapping a key is AES-256-GCM in the
 * token with the key's context as AAD; the root key's value never leaves it.
 *
 * Envelope: [format 2][12-byte IV][ciphertext ‖ 16-byte tag], distinct from
 * the software format 1 so that a software-wrapped key handed to the HSM (or
 * the reverse) is refused up front.
 */
import { IntegrityError } from '../errors.js';
import type { KeyMaterial } from '../crypto/aead.js';
import type { RootKey } from './root-key.js';
import { gcmIv, type Pkcs11Token } from './pkcs11.js';

export const FORMAT_PKCS11_AES_GCM = 2;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class Pkcs11RootKey implements RootKey {
  constructor(
    private readonly token: Pkcs11Token,
    private readonly handle: Buffer,
    readonly version: number,
    /** The token object's label, e.g. coffer-root-v2. */
    readonly label: string,
  ) {}

  get objectHandle(): Buffer {
    return this.handle;
  }

  async wrapKey(key: KeyMaterial, aad: Uint8Array): Promise<Uint8Array> {
    const iv = gcmIv();
    const sealed = await this.token.encryptGcm(this.handle, iv, aad, key);
    const out = new Uint8Array(1 + IV_BYTES + sealed.length);
    out[0] = FORMAT_PKCS11_AES_GCM;
    out.set(iv, 1);
    out.set(sealed, 1 + IV_BYTES);
    return out;
  }

  async unwrapKey(wrapped: Uint8Array, aad: Uint8Array, what: string): Promise<KeyMaterial> {
    if (wrapped.length < 1 + IV_BYTES + TAG_BYTES || wrapped[0] !== FORMAT_PKCS11_AES_GCM) throw new IntegrityError(what);
    const plain = await this.token.decryptGcm(this.handle, wrapped.subarray(1, 1 + IV_BYTES), aad, wrapped.subarray(1 + IV_BYTES), what);
    const key = new Uint8Array(plain);
    plain.fill(0);
    return key;
  }

  /** Nothing to zero: the key lives in the token. The token connection is closed by its owner. */
  destroy(): void {}
}
