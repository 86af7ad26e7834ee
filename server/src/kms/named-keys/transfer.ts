/**
 * Bringing named keys in and taking them out (issue 14, "BYOK for named keys"
 * and "Export rules").
 *
 * Import: the material arrives wrapped under a one-time RSA-3072 wrapping key
 * of the namespace (kms/byok.ts, the same import parameters and algorithms as a
 * namespace KEK import). Symmetric keys are their raw bytes (32 for AES-256-GCM,
 * XChaCha20-Poly1305 and HMAC-SHA-256, 64 for HMAC-SHA-512); private keys are
 * PKCS#8 DER of the key type's algorithm, curve or modulus. An import creates
 * a key with origin 'external', or (importVersion, Vault transit's
 * import_version) adds the next version to a key that was imported.
 *
 * Export: one version of an exportable key, only ever wrapped under the
 * caller's RSA public key in the escrow format (kms/escrow.ts). Keys not marked
 * exportable, or locked non-exportable, refuse. No two-person approval: Coffer
 * has no per-namespace "exports need approval" setting (escrow of KEKs is
 * always two-person); a key is exportable only because a key admin made it so,
 * irreversibly.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { KmsKeyExport, KmsKeyExportRequest, KmsKeyImport, KmsKeyImportVersion, KmsKeyInfo, KmsKeyType } from '@coffer/sdk/api';
import { zeroize, type KeyMaterial } from '../../crypto/aead.js';
import { badRequest, CofferError } from '../../errors.js';
import type { ByokService } from '../byok.js';
import { parseEscrowPublicKey, wrapForEscrow } from '../escrow.js';
import { checkKeyName } from './key-store.js';
import { KEY_TYPES } from './key-types.js';
import type { NamedKeys } from './keys.js';

const CURVES: Record<string, string> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1' };

function refuse(message: string, material: Uint8Array): never {
  zeroize(material);
  throw new CofferError('invalid_key_material', message);
}

/**
 * Checks that `material` is a key of `type`; returns what is stored (the
 * caller's bytes, or for private keys their canonical PKCS#8 DER re-encoding).
 * Zeroes whatever it does not return.
 */
export function checkImportedMaterial(type: KmsKeyType, material: Uint8Array): KeyMaterial {
  const spec = KEY_TYPES[type];
  if (spec.family === 'aead' || spec.family === 'hmac') {
    if (material.length !== spec.bytes) refuse(`a ${type} key is ${spec.bytes} bytes; the imported material is ${material.length}`, material);
    return material;
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(material.buffer, material.byteOffset, material.byteLength), format: 'der', type: 'pkcs8' });
  } catch {
    refuse(`a ${type} key is imported as a PKCS#8 DER private key; this material is not one`, material);
  }
  const details = key.asymmetricKeyDetails ?? {};
  const fits =
    (spec.family === 'rsa' && key.asymmetricKeyType === 'rsa' && details.modulusLength === spec.modulusLength) ||
    (spec.family === 'ecdsa' && key.asymmetricKeyType === 'ec' && details.namedCurve === CURVES[spec.namedCurve!]) ||
    (spec.family === 'ed25519' && key.asymmetricKeyType === 'ed25519');
  if (!fits) refuse(`the imported private key is not a ${type} key`, material);
  const der = key.export({ format: 'der', type: 'pkcs8' });
  zeroize(material);
  const out = new Uint8Array(der);
  der.fill(0);
  return out;
}

export class KeyTransfer {
  constructor(
    private readonly keys: NamedKeys,
    private readonly byok: Pick<ByokService, 'unwrapForNamedKey'>,
  ) {}

  /** A new key whose version 1 is the imported material (origin 'external'). */
  async importKey(namespace: string, name: string, req: KmsKeyImport): Promise<KmsKeyInfo> {
    checkKeyName(name);
    const spec = KEY_TYPES[req.type];
    if (!spec) throw badRequest('type is a KMS key type');
    if (req.hsm === true) {
      throw new CofferError('unsupported_algorithm', 'key material cannot be imported into the HSM (BYOK of HSM-resident keys is not supported): import a software key, or create an HSM-resident key (generated in the HSM)');
    }
    if (req.exportable === true && req.export_locked === true) throw badRequest('a key cannot be both exportable and export_locked');
    // Refused before the import token is spent: a key of that name exists already.
    if (await this.exists(namespace, name)) throw new CofferError('already_exists', `key "${name}" already exists in namespace "${namespace}"`);
    const { import_token, encrypted_key_material, ...create } = req;
    const material = await this.byok.unwrapForNamedKey(namespace, import_token, encrypted_key_material, (m) => checkImportedMaterial(req.type, m));
    try {
      return await this.keys.createWith(namespace, name, create, material, 'external');
    } finally {
      zeroize(material);
    }
  }

  /** The imported material as the next version of an imported key (Vault transit's import_version). */
  async importVersion(namespace: string, name: string, req: KmsKeyImportVersion): Promise<KmsKeyInfo> {
    const { row } = await this.keys.store.find(namespace, name);
    if (row.origin !== 'external') {
      throw badRequest(`key "${name}" was generated by Coffer (origin internal): only imported keys take imported versions; rotate it instead`);
    }
    const material = await this.byok.unwrapForNamedKey(namespace, req.import_token, req.encrypted_key_material, (m) => checkImportedMaterial(row.type, m));
    try {
      return await this.keys.addVersion(namespace, name, row.id, material);
    } finally {
      zeroize(material);
    }
  }

  /** One version of an exportable key, wrapped under the caller's RSA public key. */
  async exportKey(namespace: string, name: string, req: KmsKeyExportRequest): Promise<KmsKeyExport> {
    const publicKey = parseEscrowPublicKey(req.public_key);
    const { row } = await this.keys.store.find(namespace, name);
    if (row.hsm) throw badRequest(`key "${name}" is HSM-resident: its material never leaves the HSM, so it cannot be exported`);
    if (row.export_locked) throw badRequest(`key "${name}" is permanently non-exportable (export_locked): it cannot be exported`);
    if (!row.exportable) throw badRequest(`key "${name}" is not exportable (a key admin can set exportable in its config; that cannot be undone)`);
    const version = req.version ?? row.latest_version;
    this.keys.store.checkDecryptionVersion(row, version);
    const versions = await this.keys.store.versions(row, [version]);
    const material = await this.keys.store.open(row, versions.get(version)!);
    try {
      const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
      if (req.algorithm === 'RSAES_OAEP_SHA_256' && material.length > bits / 8 - 66) {
        throw badRequest(`a ${row.type} key is too long for RSAES_OAEP_SHA_256 under a ${bits}-bit key: use RSA_AES_KEY_WRAP_SHA_256`);
      }
      const algorithm = req.algorithm ?? 'RSA_AES_KEY_WRAP_SHA_256';
      const wrapped = wrapForEscrow(material, publicKey, algorithm);
      return {
        namespace,
        name,
        type: row.type,
        key_version: version,
        algorithm,
        material_format: KEY_TYPES[row.type].family === 'aead' || KEY_TYPES[row.type].family === 'hmac' ? 'raw' : 'pkcs8-der',
        wrapped_key_material: wrapped.toString('base64'),
      };
    } finally {
      zeroize(material);
    }
  }

  private async exists(namespace: string, name: string): Promise<boolean> {
    try {
      await this.keys.store.find(namespace, name);
      return true;
    } catch (err) {
      if (err instanceof CofferError && err.code === 'not_found' && err.message.startsWith('key ')) return false;
      throw err;
    }
  }
}
