/** `/v1/byok` and `/v1/escrow`: importing key material, two-person escrow exports. */

export const IMPORT_ALGORITHMS = ['RSAES_OAEP_SHA_256', 'RSAES_OAEP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_1'] as const;
export type ImportAlgorithm = (typeof IMPORT_ALGORITHMS)[number];
export const ESCROW_ALGORITHMS = ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const;
export type EscrowAlgorithm = (typeof ESCROW_ALGORITHMS)[number];

export interface ImportParams {
  import_token: string;
  algorithm: ImportAlgorithm;
  wrapping_key_spec: 'RSA_3072';
  /** SPKI, PEM. */
  public_key: string;
  expires_at: string;
  /** Where the wrapping key's private half lives. */
  wrapping_key_origin: 'hsm' | 'software';
}

/** An escrow request, as every escrow endpoint shows it. */
export interface EscrowRequest {
  id: string;
  namespace: string;
  /** The KEK version escrowed; null when the request exports a named key (`kms_key`). */
  kek_version: number | null;
  /** Set when the request exports a version of a named key (namespaces with `kms_export_approval`). */
  kms_key?: { name: string; version: number } | null;
  algorithm: string;
  state: 'pending' | 'approved' | 'downloaded' | 'expired';
  requested_by: string;
  approved_by: string | null;
  created_at: string;
  expires_at: string;
  approved_at: string | null;
  downloaded_at: string | null;
}

export interface EscrowDownload extends EscrowRequest {
  /** Base64: the KEK wrapped under the requester's public key (formats as BYOK). */
  wrapped_key_material: string;
}

/** Body of POST /v1/escrow/requests. */
export interface EscrowRequestOptions {
  namespace: string;
  /** PEM (SPKI) RSA public key, 2048–8192 bits. */
  public_key: string;
  algorithm?: EscrowAlgorithm;
  kek_version?: number;
  ttl_seconds?: number;
}
