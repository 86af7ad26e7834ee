/**
 * Key lifecycle: root key rotation, seal migration, root token regeneration
 * (`sys`), namespace KEKs and shredding (`namespaces`), BYOK imports and
 * two-person escrow exports. Thin: the server validates bodies and says why it
 * refuses. Shares, wrapped key material and tokens pass through untouched and
 * are never put in an error message.
 */
import type {
  EscrowDownload,
  EscrowRequest,
  EscrowRequestOptions,
  ImportAlgorithm,
  ImportParams,
  KekRotation,
  RotateRootResult,
} from './api/index.js';
import { invalidArgument } from './errors.js';
import { checkNamespace } from './names.js';
import type { Transport } from './transport.js';

export { ESCROW_ALGORITHMS, IMPORT_ALGORITHMS } from './api/index.js';
export type {
  EscrowAlgorithm,
  EscrowDownload,
  EscrowRequest,
  EscrowRequestOptions,
  GenerateRootProgress,
  ImportAlgorithm,
  ImportParams,
  KekRotation,
  KekStatus,
  KekVersionStatus,
  RewrapCounts,
  RotateRootResult,
  SealMigrateResult,
  ShredSchedule,
} from './api/index.js';

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
