/**
 * Recovery from a lost HSM (the key recovery plan's case (c)), for a root key
 * whose material the operators hold: one imported with BYOK
 * (`POST /v1/byok/root/import`), which they generated themselves and kept
 * (split, in a safe), like AWS KMS imported key material. A root key Coffer
 * generated inside the HSM never left it, and only the HSM vendor's backup or
 * clone of the token brings it back.
 *
 * `coffer-server hsm-restore-root --label L --key-file F` (no server running)
 * puts that material into a NEW token under the label the backup names
 * (`hsm_key_label`), through the same path as a BYOK root import: the token
 * makes a one-time RSA-3072 key pair, the material is wrapped for it here
 * (RSA-OAEP-SHA-1 of an ephemeral AES key, then AES key wrap with padding:
 * what SoftHSM2 and most HSMs unwrap natively) and unwrapped INTO the token as
 * a sensitive, non-extractable root key object; the key pair is destroyed.
 * Many HSMs refuse to create a secret key object from a plaintext value
 * (C_CreateObject) in their approved mode; an unwrap they accept.
 *
 * Nothing here proves the material is the right root key: the server does, at
 * unseal, by opening the stored root check value with it.
 */
import { constants, createCipheriv, publicEncrypt, randomBytes, randomUUID } from 'node:crypto';
import { zeroize } from '../crypto/aead.js';
import { CofferError } from '../errors.js';
import { Pkcs11Token, type Pkcs11Settings } from './pkcs11.js';

const KWP_IV = Buffer.from('A65959A6', 'hex');

export interface RestoredRoot {
  label: string;
  /** The token reported the key's length (SoftHSM2 reports 0 for unwrapped keys; then the AES-KWP block proved 32 bytes). */
  valueLen: number;
}

/** Puts 32 bytes of root key material into the token as `label`; refuses when the label is taken. The caller zeroes `material`. */
export async function restoreRootKey(settings: Pkcs11Settings, label: string, material: Uint8Array): Promise<RestoredRoot> {
  if (material.length !== 32) throw new CofferError('invalid_key_material', `a root key is 32 bytes; this file holds ${material.length}`);
  const token = Pkcs11Token.open(settings);
  const rsaLabel = `${label}-restore-${randomUUID()}`;
  const ephemeral = randomBytes(32);
  try {
    if (await token.findAesKey(label)) {
      throw new CofferError('conflict', `the token already holds a key labelled "${label}": this is not a new token, or the key is there already`);
    }
    const { publicKey } = await token.generateImportKeyPair(rsaLabel);
    const head = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ephemeral);
    const cipher = createCipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
    const wrapped = Buffer.concat([head, cipher.update(material), cipher.final()]);
    await token.unwrapImported(rsaLabel, 'sha1', true, wrapped, { asRoot: true, label });
    const described = await token.describeKey(label);
    if (!described || !described.token || !described.sensitive || described.extractable) {
      await token.destroyByLabel(label);
      throw new CofferError('internal', `the token did not keep "${label}" as a sensitive, non-extractable token object`);
    }
    return { label, valueLen: described.valueLen };
  } finally {
    zeroize(ephemeral);
    await token.destroyByLabel(rsaLabel).catch(() => undefined);
    token.close();
  }
}
