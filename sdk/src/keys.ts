/**
 * Key lifecycle: root key rotation, seal migration, root token regeneration
 * (`sys`), namespace KEKs and shredding (`namespaces`), BYOK imports and
 * two-person escrow exports. Thin: the server validates bodies and says why it
 * refuses. Shares, wrapped key material and tokens pass through untouched and
 * are never put in an error message.
 */
import { invalidArgument } from './errors.js';
import { checkNamespace } from './names.js';
import type { Transport } from './transport.js';

export interface RewrapCounts {
  keks: number;
  system_keys: number;
  import_keys: number;
}

export interface RotateRootResult {
  seal_type: string;
  root_version: number;
  /** Shamir: 'pending_verification' until verifyRotateRoot with the new shares. */
  state?: 'pending_verification' | 'completed';
  rewrapped?: RewrapCounts;
  /** Shamir, step 1: the new shares, shown once. */
  shares?: string[];
  threshold?: number;
  /** PKCS#11: the label of the new root key object. */
  key_label?: string;
}

export interface SealMigrateResult {
  seal_type: string;
  root_version: number;
  rewrapped: RewrapCounts;
  message: string;
}

export interface GenerateRootProgress {
  progress: number;
  threshold: number;
  complete: boolean;
  /** Only in the answer that completes the threshold. */
  root_token?: string;
}

export interface KekVersionStatus {
  version: number;
  state: string;
  origin: string;
  encryptions: number;
  created_at: string;
  retired_at: string | null;
  destroyed_at: string | null;
}

export interface KekStatus {
  namespace: string;
  current_version: number;
  rotation_period: number | null;
  next_rotation_at: string | null;
  usage_limit: number;
  deletion_date: string | null;
  versions: KekVersionStatus[];
  rewrap: {
    state: 'running' | 'completed';
    target_version: number;
    total: number;
    rewrapped: number;
    remaining: number;
    started_at: string;
    updated_at: string;
    completed_at: string | null;
  } | null;
}

export interface KekRotation {
  namespace: string;
  version: number;
  origin: string;
  created_at: string;
  deks_to_rewrap: number;
}

export interface ShredSchedule {
  namespace: string;
  deletion_requested_at: string | null;
  deletion_date: string | null;
}

export type ImportAlgorithm = 'RSAES_OAEP_SHA_256' | 'RSAES_OAEP_SHA_1' | 'RSA_AES_KEY_WRAP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_1';
export const IMPORT_ALGORITHMS: readonly ImportAlgorithm[] = ['RSAES_OAEP_SHA_256', 'RSAES_OAEP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_1'];
export type EscrowAlgorithm = 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_256';
export const ESCROW_ALGORITHMS: readonly EscrowAlgorithm[] = ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'];

export interface ImportParams {
  import_token: string;
  algorithm: ImportAlgorithm;
  wrapping_key_spec: string;
  /** SPKI, PEM. */
  public_key: string;
  expires_at: string;
  wrapping_key_origin: 'hsm' | 'software';
}

export interface EscrowRequest {
  id: string;
  namespace: string;
  kek_version: number;
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

export interface EscrowRequestOptions {
  namespace: string;
  /** PEM (SPKI) RSA public key, 2048–8192 bits. */
  public_key: string;
  algorithm?: EscrowAlgorithm;
  kek_version?: number;
  ttl_seconds?: number;
}

/** An escrow request id is a UUID; anything else would address another URL. */
function requestId(id: string): string {
  if (!/^[0-9a-fA-F-]{1,64}$/.test(id)) throw invalidArgument('invalid escrow request id');
  return id;
}

export class ByokApi {
  constructor(private readonly http: Transport) {}

  /** A wrapping public key and a one-attempt import token (24 h) for a namespace's next KEK version. */
  async importParams(namespace: string, options: { algorithm?: ImportAlgorithm } = {}): Promise<ImportParams> {
    // Not retried: every call opens new parameters on the server (at most 100 at once).
    return this.http.request({
      method: 'GET',
      path: `/v1/byok/namespaces/${checkNamespace(namespace)}/import-params`,
      query: { algorithm: options.algorithm },
      idempotent: false,
    });
  }

  /** Imports base64 wrapped key material as the namespace's new KEK version (origin external). One attempt per token. */
  async importKey(namespace: string, importToken: string, encryptedKeyMaterial: string): Promise<KekRotation> {
    return this.http.request({
      method: 'POST',
      path: `/v1/byok/namespaces/${checkNamespace(namespace)}/import`,
      body: { import_token: importToken, encrypted_key_material: encryptedKeyMaterial },
      idempotent: false,
    });
  }

  /** PKCS#11 seal: parameters to import the next root key into the HSM (server admin). */
  async rootImportParams(options: { algorithm?: ImportAlgorithm } = {}): Promise<ImportParams> {
    return this.http.request({ method: 'GET', path: '/v1/byok/root/import-params', query: { algorithm: options.algorithm }, idempotent: false });
  }

  async importRootKey(importToken: string, encryptedKeyMaterial: string): Promise<RotateRootResult> {
    return this.http.request({
      method: 'POST',
      path: '/v1/byok/root/import',
      body: { import_token: importToken, encrypted_key_material: encryptedKeyMaterial },
      idempotent: false,
    });
  }
}

export class EscrowApi {
  constructor(private readonly http: Transport) {}

  async request(options: EscrowRequestOptions): Promise<EscrowRequest> {
    return this.http.request({ method: 'POST', path: '/v1/escrow/requests', body: { ...options, namespace: checkNamespace(options.namespace) }, idempotent: false });
  }

  /** Requests of a namespace, newest first (at most 100). */
  async list(namespace: string): Promise<{ requests: EscrowRequest[] }> {
    return this.http.request({ method: 'GET', path: '/v1/escrow/requests', query: { namespace: checkNamespace(namespace) } });
  }

  async get(id: string): Promise<EscrowRequest> {
    return this.http.request({ method: 'GET', path: `/v1/escrow/requests/${requestId(id)}` });
  }

  /** By a different identity than the requester (two-person rule). */
  async approve(id: string): Promise<EscrowRequest> {
    return this.http.request({ method: 'POST', path: `/v1/escrow/requests/${requestId(id)}/approve`, body: {}, idempotent: false });
  }

  /** Once, by the requester: never retried (a second download is refused, 410). */
  async download(id: string): Promise<EscrowDownload> {
    return this.http.request({ method: 'POST', path: `/v1/escrow/requests/${requestId(id)}/download`, body: {}, idempotent: false });
  }
}
