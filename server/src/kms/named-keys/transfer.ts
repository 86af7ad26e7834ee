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
 * exportable, or locked non-exportable, refuse. In a namespace with
 * `kms_export_approval` (one-way) an export also needs an escrow request of
 * the key version, approved by a different identity (the escrow records and
 * approval route, kms/escrow.ts), and uses it up: one approval, one export.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { EscrowRequest, KmsKeyExport, KmsKeyExportApprovalRequest, KmsKeyExportRequest, KmsKeyImport, KmsKeyImportVersion, KmsKeyInfo, KmsKeyType } from '@coffer/sdk/api';
import { zeroize, type KeyMaterial } from '../../crypto/aead.js';
import { badRequest, CofferError } from '../../errors.js';
import type { ByokService } from '../byok.js';
import { ESCROW_MAX_TTL_SECONDS, parseEscrowPublicKey, wrapForEscrow, type EscrowService } from '../escrow.js';
import type { NamespaceService } from '../../secrets/namespace-service.js';
import { checkKeyName } from './key-store.js';
import { KEY_TYPES } from './key-types.js';
import { EXTERNAL_NO_AUTO_ROTATE, type NamedKeys } from './keys.js';

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

/** Where export approvals live (the escrow records) and which namespaces require them. */
export interface ExportApprovals {
  escrow: Pick<EscrowService, 'requestKeyExport' | 'approvedKeyExport' | 'completeKeyExport'>;
  namespaces: Pick<NamespaceService, 'exportApprovalRequired'>;
}

export class KeyTransfer {
  constructor(
    private readonly keys: NamedKeys,
    private readonly byok: Pick<ByokService, 'unwrapForNamedKey'>,
    private readonly approvals?: ExportApprovals,
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
    if (req.auto_rotate_period !== undefined && req.auto_rotate_period !== 0) throw badRequest(EXTERNAL_NO_AUTO_ROTATE);
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

  /**
   * Asks for a second identity's approval to export one version of an
   * exportable key (namespaces with kms_export_approval): an escrow request
   * that POST /v1/escrow/requests/{id}/approve approves, and `exportKey` with
   * its request_id uses once.
   */
  async requestExport(namespace: string, name: string, identity: string, req: KmsKeyExportApprovalRequest): Promise<EscrowRequest> {
    const approvals = this.requireApprovals();
    const publicKey = parseEscrowPublicKey(req.public_key);
    const { row, namespaceId } = await this.keys.store.find(namespace, name);
    checkExportable(row, name);
    const version = req.version ?? row.latest_version;
    this.keys.store.checkDecryptionVersion(row, version);
    if (!(await this.keys.store.versions(row, [version])).has(version)) throw badRequest(`key "${name}" has no version ${version}`);
    const algorithm = req.algorithm ?? 'RSA_AES_KEY_WRAP_SHA_256';
    checkFits(row.type, algorithm, publicKey, KEY_TYPES[row.type].bytes);
    if (req.ttl_seconds !== undefined && (!Number.isInteger(req.ttl_seconds) || req.ttl_seconds < 60 || req.ttl_seconds > ESCROW_MAX_TTL_SECONDS)) {
      throw badRequest(`ttl_seconds is whole seconds from 60 to ${ESCROW_MAX_TTL_SECONDS}`);
    }
    return approvals.escrow.requestKeyExport(identity, { namespace, namespaceId, keyId: row.id, version, algorithm, publicKey: req.public_key, ttlSeconds: req.ttl_seconds });
  }

  /** One version of an exportable key, wrapped under the caller's RSA public key (or an approved request's). */
  async exportKey(namespace: string, name: string, req: KmsKeyExportRequest, identity = ''): Promise<KmsKeyExport> {
    const { row } = await this.keys.store.find(namespace, name);
    checkExportable(row, name);
    let publicKey: KeyObject;
    let version: number;
    let algorithm: 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_256';
    const requestId = req.request_id;
    if (requestId !== undefined) {
      if (req.public_key !== undefined || req.algorithm !== undefined || req.version !== undefined) {
        throw badRequest('with request_id the export uses the approved request\'s public key, algorithm and version: leave them out');
      }
      ({ publicKey, version, algorithm } = await this.requireApprovals().escrow.approvedKeyExport(requestId, identity, row.id));
    } else {
      if (this.approvals && (await this.approvals.namespaces.exportApprovalRequired(namespace))) {
        throw new CofferError(
          'permission_denied',
          `namespace "${namespace}" requires two-person approval for key exports: request one (POST /v1/kms/${namespace}/keys/${name}/export-requests), ` +
            'have a different identity approve it (POST /v1/escrow/requests/{id}/approve), then export with {"request_id": "<id>"}',
        );
      }
      if (req.public_key === undefined) throw badRequest('public_key (or the request_id of an approved export request) is required');
      publicKey = parseEscrowPublicKey(req.public_key);
      version = req.version ?? row.latest_version;
      algorithm = req.algorithm ?? 'RSA_AES_KEY_WRAP_SHA_256';
    }
    this.keys.store.checkDecryptionVersion(row, version);
    const versions = await this.keys.store.versions(row, [version]);
    const stored = versions.get(version);
    if (!stored) throw badRequest(`key "${name}" has no version ${version}`);
    const material = await this.keys.store.open(row, stored);
    try {
      checkFits(row.type, algorithm, publicKey, material.length);
      const wrapped = wrapForEscrow(material, publicKey, algorithm);
      // Used up only once the material is wrapped: a failure before leaves the approval usable.
      if (requestId !== undefined) await this.requireApprovals().escrow.completeKeyExport(requestId);
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

  private requireApprovals(): ExportApprovals {
    if (!this.approvals) throw new CofferError('unsupported_algorithm', 'export approvals are not available here');
    return this.approvals;
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

function checkExportable(row: { export_locked: boolean; exportable: boolean; hsm: boolean }, name: string): void {
  if (row.hsm) throw badRequest(`key "${name}" is HSM-resident: its material never leaves the HSM, so it cannot be exported`);
  if (row.export_locked) throw badRequest(`key "${name}" is permanently non-exportable (export_locked): it cannot be exported`);
  if (!row.exportable) throw badRequest(`key "${name}" is not exportable (a key admin can set exportable in its config; that cannot be undone)`);
}

/** Raw RSA-OAEP (SHA-256) takes at most modulus bytes - 66; `length` unknown (a private key before it is opened): not checked yet. */
function checkFits(type: KmsKeyType, algorithm: string, publicKey: KeyObject, length: number | undefined): void {
  if (algorithm !== 'RSAES_OAEP_SHA_256' || length === undefined) return;
  const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (length > bits / 8 - 66) throw badRequest(`a ${type} key is too long for RSAES_OAEP_SHA_256 under a ${bits}-bit key: use RSA_AES_KEY_WRAP_SHA_256`);
}
