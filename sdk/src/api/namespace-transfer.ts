/**
 * The portable namespace export (`POST /v1/namespaces/{ns}/export`, `coffer
 * namespace export`): one namespace's secrets and named keys, made for ONE
 * other Coffer server's import key, so a team can move between servers.
 *
 * UTF-8 JSON lines, every line ending in "\n":
 *
 *   {"coffer_namespace_export": NamespaceExportHeader}   in the clear
 *   {"seq": 0, "sealed": "<base64>"}                       one line per record, seq 0, 1, 2, …
 *   ...
 *
 * Every record is AES-256-GCM under a fresh 256-bit transfer key: sealed =
 * nonce (12) ‖ ciphertext ‖ tag (16), AAD = SHA-256 of the header line's exact
 * bytes (without its "\n") ‖ seq as 4 bytes big-endian. The transfer key is
 * wrapped for the target's import key the BYOK way (RSA_AES_KEY_WRAP_SHA_256:
 * RSA-OAEP-SHA-256 of an ephemeral AES key, then AES key wrap with padding,
 * RFC 5649). So an altered header, a record moved, dropped, replayed from
 * another bundle, or altered, all fail to open; the last record is always
 * `{"kind":"end"}` with the record count, so a truncated bundle fails too.
 *
 * In the clear: the namespace name, times, the target key's fingerprint and the
 * names of named keys that were left out (not exportable). Secret paths, values,
 * metadata and key material are only inside sealed records.
 */

export const NAMESPACE_EXPORT_FORMAT = 1;
export const NAMESPACE_EXPORT_MEDIA_TYPE = 'application/x-ndjson';
/** The only wrapping of the transfer key (the BYOK algorithm every seal can unwrap for a namespace). */
export const NAMESPACE_EXPORT_WRAPPING = 'RSA_AES_KEY_WRAP_SHA_256';

export interface NamespaceExportHeader {
  format: number;
  /** The namespace as named on the source server (the target may import it under another name). */
  namespace: string;
  created_at: string;
  /** SHA-256 (hex) of the DER SubjectPublicKeyInfo of the target's import key: which key can open it. */
  target_key_sha256: string;
  wrapping_algorithm: typeof NAMESPACE_EXPORT_WRAPPING;
  /** The transfer key, wrapped (base64). */
  wrapped_transfer_key: string;
  content_cipher: 'AES-256-GCM';
  /** Named keys left out, and why: material of a key that is not exportable never leaves its server. */
  skipped_keys: Array<{ name: string; reason: string }>;
}

/** The sealed records, in this order: namespace, secrets…, keys…, end. */
export type NamespaceExportRecord =
  | { kind: 'namespace'; description: string; rotation_period: number | null }
  | NamespaceExportSecret
  | NamespaceExportKey
  | { kind: 'end'; records: number; secrets: number; versions: number; keys: number };

export interface NamespaceExportSecret {
  kind: 'secret';
  path: string;
  /** The highest version number the secret has had: the next write continues from it. */
  current_version: number;
  max_versions: number;
  created_at: string;
  updated_at: string;
  /** Every retained version, oldest first; a destroyed version keeps its place without data. */
  versions: Array<{
    version: number;
    type: string;
    metadata: Record<string, string>;
    /** null: destroyed. */
    data: Record<string, string> | null;
    created_at: string;
    deleted_at: string | null;
    destroyed_at: string | null;
  }>;
}

export interface NamespaceExportKey {
  kind: 'key';
  /** Kept on the target: ciphertexts name their key by id (key tag and AAD). */
  id: string;
  name: string;
  type: string;
  origin: string;
  latest_version: number;
  min_decryption_version: number;
  min_encryption_version: number;
  deletion_allowed: boolean;
  auto_rotate_period: number | null;
  /** Every stored version (trimmed ones are gone on the source too): raw bytes or PKCS#8 DER, base64. */
  versions: Array<{ version: number; material: string; created_at: string }>;
}

export interface NamespaceExportRequest {
  /** The target's import key: PEM of the public key from its import parameters (RSA_AES_KEY_WRAP_SHA_256). */
  public_key: string;
}

export interface NamespaceImportResult {
  namespace: string;
  /** The name the namespace had on the source server. */
  source_namespace: string;
  secrets: number;
  versions: number;
  keys: number;
  skipped_keys: Array<{ name: string; reason: string }>;
}
