/**
 * The key management service: named keys of a namespace that applications use
 * without ever holding them (encrypt/decrypt, data keys, sign/verify, HMAC).
 * Bytes on the wire are standard base64. Ciphertexts, signatures and HMACs are
 * `coffer:v<version>:<base64>` (the server's kms/named-keys/ciphertext.ts
 * documents the bytes).
 */

export const KMS_KEY_TYPES = [
  'aes256-gcm',
  'xchacha20-poly1305',
  'hmac-sha256',
  'hmac-sha512',
  'ed25519',
  'ecdsa-p256',
  'ecdsa-p384',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
] as const;
export type KmsKeyType = (typeof KMS_KEY_TYPES)[number];

/** What a key can be used for; each operation has a policy capability of its own. */
export const KMS_OPERATIONS = ['encrypt', 'decrypt', 'rewrap', 'datakey', 'sign', 'verify', 'hmac'] as const;
export type KmsOperation = (typeof KMS_OPERATIONS)[number];

/** Largest plaintext (decoded bytes) of one encrypt: larger data goes under a data key (datakey). */
export const KMS_MAX_PLAINTEXT_BYTES = 64 * 1024;
/** Most items in one batch request. */
export const KMS_MAX_BATCH_ITEMS = 10_000;
export const KMS_DATAKEY_BITS = [128, 256, 512] as const;
export const KMS_MAX_RANDOM_BYTES = 1024;
/** Shortest auto_rotate_period (seconds); 0 turns scheduled rotation off. */
export const KMS_MIN_AUTO_ROTATE_SECONDS = 3600;

export type KmsHashAlgorithm = 'sha2-256' | 'sha2-384' | 'sha2-512';
/** RSA signatures: PSS (salt as long as the digest) or PKCS#1 v1.5. */
export type KmsSignatureAlgorithm = 'pss' | 'pkcs1v15';
/** ECDSA signature encoding: ASN.1 DER, or r‖s as in JWS (IEEE P1363). */
export type KmsMarshaling = 'asn1' | 'jws';

const KEY_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** Why `name` is not a key name, or null when it is one. */
export function kmsKeyNameProblem(name: string): string | null {
  return KEY_NAME.test(name) ? null : 'key names are 1-128 characters of A-Z a-z 0-9 . _ - and do not start with "."';
}

export interface KmsKeyCreate {
  type: KmsKeyType;
  /** Opt-in and irreversible. */
  exportable?: boolean;
  /** Permanently non-exportable (irreversible; excludes exportable). */
  export_locked?: boolean;
  deletion_allowed?: boolean;
  /** Seconds between scheduled rotations; 0 or absent: manual only. */
  auto_rotate_period?: number;
  /** Generate and keep the key in the HSM (PKCS#11 seal only; aes256-gcm, hmac-*, ecdsa-*, rsa-*): never exportable. */
  hsm?: boolean;
}

/**
 * BYOK for a named key: a KmsKeyCreate plus the material wrapped under the
 * import parameters (GET KMS_PATHS.importParams). Symmetric keys are their raw
 * bytes, private keys PKCS#8 DER; the wrapping is that of the namespace KEK import.
 */
export interface KmsKeyImport extends KmsKeyCreate {
  import_token: string;
  /** Base64 of the wrapped material (RSA_AES_KEY_WRAP_* for anything over a few hundred bytes). */
  encrypted_key_material: string;
}

/** A new version of an imported key (Vault transit's import_version). */
export interface KmsKeyImportVersion {
  import_token: string;
  encrypted_key_material: string;
}

export interface KmsKeyExportRequest {
  /** The RSA public key (PEM, 2048-8192 bits) the material is wrapped under. */
  public_key: string;
  /** Default RSA_AES_KEY_WRAP_SHA_256 (fits every key type). */
  algorithm?: 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_256';
  /** Default: the latest version. */
  version?: number;
}

/** One key version wrapped under the caller's public key, in the escrow format (api/keys.ts). */
export interface KmsKeyExport {
  namespace: string;
  name: string;
  type: KmsKeyType;
  key_version: number;
  algorithm: 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_256';
  /** 'raw': symmetric key bytes; 'pkcs8-der': the private key. */
  material_format: 'raw' | 'pkcs8-der';
  wrapped_key_material: string;
}

export interface KmsKeyConfigUpdate {
  exportable?: boolean;
  export_locked?: boolean;
  deletion_allowed?: boolean;
  min_decryption_version?: number;
  /** 0: no minimum of its own (min_decryption_version still applies). Encryption uses the latest version unless told otherwise. */
  min_encryption_version?: number;
  auto_rotate_period?: number;
}

export interface KmsPublicKey {
  pem: string;
  jwk: Record<string, string>;
}

export interface KmsKeyVersionInfo {
  version: number;
  created_at: string;
  /** Asymmetric keys only. */
  public_key?: KmsPublicKey;
}

export interface KmsKeyInfo {
  namespace: string;
  name: string;
  type: KmsKeyType;
  origin: 'internal' | 'external';
  hsm: boolean;
  exportable: boolean;
  export_locked: boolean;
  deletion_allowed: boolean;
  latest_version: number;
  min_available_version: number;
  min_decryption_version: number;
  min_encryption_version: number;
  /** Seconds; 0: manual rotation only. */
  auto_rotate_period: number;
  operations: KmsOperation[];
  created_at: string;
  updated_at: string;
  versions: KmsKeyVersionInfo[];
}

export interface KmsKeySummary {
  name: string;
  type: KmsKeyType;
  latest_version: number;
}

export interface KmsKeyPage {
  namespace: string;
  keys: KmsKeySummary[];
  next_cursor: string | null;
}

export interface KmsEncryptRequest {
  /** base64, at most KMS_MAX_PLAINTEXT_BYTES decoded. */
  plaintext: string;
  associated_data?: string;
  key_version?: number;
}

export interface KmsDecryptRequest {
  ciphertext: string;
  associated_data?: string;
}

export interface KmsRewrapRequest {
  ciphertext: string;
  associated_data?: string;
  /** The version to rewrap to (default: the one encryption uses). */
  key_version?: number;
}

export interface KmsCiphertext {
  ciphertext: string;
  key_version: number;
}

export interface KmsPlaintext {
  plaintext: string;
  key_version: number;
}

export type KmsBatchOperation = 'encrypt' | 'decrypt' | 'rewrap';
export type KmsBatchItem = KmsEncryptRequest | KmsDecryptRequest | KmsRewrapRequest;
export type KmsBatchResult =
  | (KmsCiphertext & { error?: never })
  | (KmsPlaintext & { error?: never })
  | { error: { code: string; message: string } };

export interface KmsBatchResponse {
  results: KmsBatchResult[];
  /** How many items failed (each has `error`); the others succeeded. */
  failed: number;
}

export interface KmsDataKeyRequest {
  /** 'plaintext': the key and its wrapped form; 'wrapped': the wrapped form only. */
  mode: 'plaintext' | 'wrapped';
  bits?: (typeof KMS_DATAKEY_BITS)[number];
  associated_data?: string;
}

export interface KmsDataKey {
  /** The data key encrypted by the named key: `decrypt` returns it. */
  ciphertext: string;
  key_version: number;
  /** base64, in 'plaintext' mode only. */
  plaintext?: string;
}

export interface KmsSignRequest {
  /** base64 of the message, or of its digest when `prehashed`. */
  input: string;
  prehashed?: boolean;
  hash_algorithm?: KmsHashAlgorithm;
  signature_algorithm?: KmsSignatureAlgorithm;
  marshaling_algorithm?: KmsMarshaling;
  key_version?: number;
}

export interface KmsSignature {
  signature: string;
  key_version: number;
}

export interface KmsVerifyRequest extends Omit<KmsSignRequest, 'key_version'> {
  signature: string;
}

export interface KmsHmacRequest {
  input: string;
  key_version?: number;
}

export interface KmsHmac {
  hmac: string;
  key_version: number;
}

export interface KmsHmacVerifyRequest {
  input: string;
  hmac: string;
}

export interface KmsVerification {
  valid: boolean;
}

export interface KmsRandomRequest {
  bytes?: number;
  format?: 'base64' | 'hex';
}

export interface KmsRandom {
  random: string;
}

export interface KmsTrimResult {
  namespace: string;
  name: string;
  min_available_version: number;
  versions_removed: number;
}

/** Body of POST /v1/kms/{ns}/batch/{encrypt|decrypt|rewrap}/{name}; answered 200 when every item succeeded, 207 when any failed. */
export interface KmsBatchRequest {
  items: KmsBatchItem[];
}

/** GET /v1/kms/{ns}/public-key/{name}[?version=N]. */
export interface KmsPublicKeyInfo extends KmsPublicKey {
  name: string;
  type: KmsKeyType;
  key_version: number;
}

const seg = encodeURIComponent;

/**
 * The KMS's HTTP paths (server/src/http/routes/kms.ts), Vault transit's with the
 * namespace in front. `verify` takes a KmsVerifyRequest (signature) or a
 * KmsHmacVerifyRequest (hmac). Key administration: create POST keys(ns, name)
 * with a KmsKeyCreate, read GET, delete DELETE; list GET keyList(ns)?limit&cursor.
 */
export const KMS_PATHS = {
  random: '/v1/kms/random',
  keyList: (ns: string) => `/v1/kms/${seg(ns)}/keys`,
  key: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}`,
  config: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}/config`,
  rotate: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}/rotate`,
  trim: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}/trim`,
  importParams: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}/import-params`,
  import: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}/import`,
  importVersion: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}/import-version`,
  export: (ns: string, name: string) => `/v1/kms/${seg(ns)}/keys/${seg(name)}/export`,
  publicKey: (ns: string, name: string) => `/v1/kms/${seg(ns)}/public-key/${seg(name)}`,
  encrypt: (ns: string, name: string) => `/v1/kms/${seg(ns)}/encrypt/${seg(name)}`,
  decrypt: (ns: string, name: string) => `/v1/kms/${seg(ns)}/decrypt/${seg(name)}`,
  rewrap: (ns: string, name: string) => `/v1/kms/${seg(ns)}/rewrap/${seg(name)}`,
  datakey: (ns: string, name: string, mode: KmsDataKeyRequest['mode']) => `/v1/kms/${seg(ns)}/datakey/${mode}/${seg(name)}`,
  sign: (ns: string, name: string) => `/v1/kms/${seg(ns)}/sign/${seg(name)}`,
  verify: (ns: string, name: string) => `/v1/kms/${seg(ns)}/verify/${seg(name)}`,
  hmac: (ns: string, name: string) => `/v1/kms/${seg(ns)}/hmac/${seg(name)}`,
  batch: (ns: string, name: string, operation: KmsBatchOperation) => `/v1/kms/${seg(ns)}/batch/${operation}/${seg(name)}`,
} as const;
