/**
 * Escrow export of a namespace KEK version (never the root key), wrapped under
 * a public key the requester supplies. Two-person rule: one admin requests,
 * a different admin (another principal identity) approves, the requester
 * downloads once. Requests expire. Every step is an audited request; the key
 * material appears only in the download response, wrapped.
 *
 * The same records approve exports of named keys in namespaces with
 * `kms_export_approval` (kms/named-keys/transfer.ts): such a request names a
 * key version instead of a KEK version, is approved the same way, and is used
 * once by the key's export route instead of the escrow download.
 */
import { createCipheriv, createPublicKey, publicEncrypt, randomBytes, randomUUID, constants, type KeyObject } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { EscrowAlgorithm, EscrowDownload, EscrowRequest } from '@coffer/sdk/api';
import { CofferError, badRequest, notFound } from '../errors.js';
import { zeroize } from '../crypto/aead.js';
import type { Keyring } from '../keyring/keyring.js';
import type { NamespaceService } from '../secrets/namespace-service.js';
import type { Transactor } from '../storage/executor.js';
import type { EscrowRequestsRepo } from '../storage/repos/escrow-requests.js';
import type { NamespaceKeysRepo } from '../storage/repos/namespace-keys.js';
import type { Database, EscrowRequestTable } from '../storage/schema.js';
import type { Selectable } from 'kysely';

export { ESCROW_ALGORITHMS, type EscrowAlgorithm } from '@coffer/sdk/api';
export const ESCROW_DEFAULT_TTL_SECONDS = 24 * 3600;
export const ESCROW_MAX_TTL_SECONDS = 7 * 24 * 3600;
const KWP_IV = Buffer.from('A65959A6', 'hex');

type Row = Selectable<EscrowRequestTable> & { kms_key_name?: string | null };

function view(row: Row, namespace: string): EscrowRequest {
  const expired = row.state !== 'downloaded' && row.expires_at.getTime() <= Date.now();
  return {
    id: row.id,
    namespace,
    kek_version: row.kek_version,
    kms_key: row.kms_key_id !== null && row.kms_key_version !== null ? { name: row.kms_key_name ?? '', version: row.kms_key_version } : null,
    algorithm: row.algorithm,
    state: expired ? 'expired' : row.state,
    requested_by: row.requested_by,
    approved_by: row.approved_by,
    created_at: row.created_at.toISOString(),
    expires_at: row.expires_at.toISOString(),
    approved_at: row.approved_at?.toISOString() ?? null,
    downloaded_at: row.downloaded_at?.toISOString() ?? null,
  };
}

/** An RSA public key of at least 2048 bits (3072 recommended), PEM (SPKI or PKCS#1). */
export function parseEscrowPublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw badRequest('public_key must be an RSA public key in PEM');
  }
  if (key.asymmetricKeyType !== 'rsa') throw badRequest('public_key must be an RSA key');
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048 || bits > 8192) throw badRequest('public_key must be 2048 to 8192 bits (3072 or more recommended)');
  return key;
}

/** Wraps `kek` under `publicKey` (synchronous: it runs while the KEK is borrowed from the cache). */
export function wrapForEscrow(kek: Uint8Array, publicKey: KeyObject, algorithm: EscrowAlgorithm): Buffer {
  if (algorithm === 'RSAES_OAEP_SHA_256') {
    return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, kek);
  }
  const ephemeral = randomBytes(32);
  try {
    const head = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ephemeral);
    const cipher = createCipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
    return Buffer.concat([head, cipher.update(kek), cipher.final()]);
  } finally {
    zeroize(ephemeral);
  }
}

/** What escrow needs from the rest of the server (wired in app/compose.ts). */
export interface EscrowDeps {
  db: Transactor;
  escrowRequests: Pick<EscrowRequestsRepo, 'insert' | 'findWithNamespace' | 'getForDownload' | 'listByNamespace' | 'approve' | 'markDownloaded'>;
  namespaceKeys: Pick<NamespaceKeysRepo, 'findWrapped'>;
  namespaces: Pick<NamespaceService, 'resolve'>;
  keyring: Pick<Keyring, 'withKekMaterial'>;
}

export class EscrowService {
  private readonly db: Transactor;
  private readonly requests: EscrowDeps['escrowRequests'];

  constructor(private readonly deps: EscrowDeps) {
    this.db = deps.db;
    this.requests = deps.escrowRequests;
  }

  async request(
    identity: string,
    input: { namespace: string; kekVersion?: number | undefined; algorithm: EscrowAlgorithm; publicKey: string; ttlSeconds?: number | undefined },
  ): Promise<EscrowRequest> {
    parseEscrowPublicKey(input.publicKey);
    const ns = await this.deps.namespaces.resolve(input.namespace);
    const version = input.kekVersion ?? ns.currentKekVersion;
    const key = await this.deps.namespaceKeys.findWrapped(ns.id, version);
    if (!key) throw notFound(`namespace "${ns.name}" has no KEK version ${version}`);
    if (!key.wrapped_key) throw new CofferError('gone', `KEK version ${version} was destroyed`);
    const ttl = input.ttlSeconds ?? ESCROW_DEFAULT_TTL_SECONDS;
    const row = await this.requests.insert({
      id: randomUUID(),
      namespace_id: ns.id,
      kek_version: version,
      algorithm: input.algorithm,
      public_key: input.publicKey,
      requested_by: identity,
      expires_at: new Date(Date.now() + ttl * 1000),
    });
    return view(row, ns.name);
  }

  /** The request and its namespace name (for the caller's authorisation check). */
  async get(id: string): Promise<EscrowRequest> {
    if (!/^[0-9a-f-]{36}$/i.test(id)) throw notFound('no such escrow request');
    const found = await this.requests.findWithNamespace(id);
    if (!found) throw notFound('no such escrow request');
    return view(found, found.namespace_name);
  }

  /** A named key's export request (the key's export route checks exportability first). */
  async requestKeyExport(
    identity: string,
    input: { namespace: string; namespaceId: string; keyId: string; version: number; algorithm: EscrowAlgorithm; publicKey: string; ttlSeconds?: number | undefined },
  ): Promise<EscrowRequest> {
    parseEscrowPublicKey(input.publicKey);
    const ttl = input.ttlSeconds ?? ESCROW_DEFAULT_TTL_SECONDS;
    const row = await this.requests.insert({
      id: randomUUID(),
      namespace_id: input.namespaceId,
      kek_version: null,
      kms_key_id: input.keyId,
      kms_key_version: input.version,
      algorithm: input.algorithm,
      public_key: input.publicKey,
      requested_by: identity,
      expires_at: new Date(Date.now() + ttl * 1000),
    });
    return this.get(row.id);
  }

  /**
   * The approved export request `id` of key `keyId`, if `identity` may use it
   * now: what to wrap (version) and how (public key, algorithm). Mark it used
   * with `completeKeyExport` once the material is wrapped.
   */
  async approvedKeyExport(id: string, identity: string, keyId: string): Promise<{ version: number; publicKey: KeyObject; algorithm: EscrowAlgorithm }> {
    const current = await this.get(id);
    const row = await this.requests.getForDownload(id);
    if (row.kms_key_id !== keyId || current.kms_key == null) throw badRequest('request_id is not an export request of this key');
    this.checkDownload(current, identity);
    return { version: current.kms_key.version, publicKey: parseEscrowPublicKey(row.public_key), algorithm: current.algorithm as EscrowAlgorithm };
  }

  /** Uses an approved export request up (compare-and-set: one approval, one export). */
  async completeKeyExport(id: string): Promise<void> {
    if (!(await this.requests.markDownloaded(id, new Date()))) throw new CofferError('gone', 'this export request was already used (one approval, one export) or expired');
  }

  /** A namespace's requests, newest first (for the second admin to find what awaits approval). */
  async list(namespace: string, limit = 100): Promise<EscrowRequest[]> {
    const ns = await this.deps.namespaces.resolve(namespace, undefined, { allowDisabled: true });
    const rows = await this.requests.listByNamespace(ns.id, limit);
    return rows.map((row) => view(row, ns.name));
  }

  /** Second admin's approval: a different identity than the requester (two-person rule). */
  async approve(id: string, identity: string, beforeCommit?: (trx: Transaction<Database>) => Promise<void>): Promise<EscrowRequest> {
    const current = await this.get(id);
    if (current.requested_by === identity) {
      throw new CofferError('permission_denied', 'two-person rule: the approver must be a different identity than the requester');
    }
    if (current.state === 'expired') throw new CofferError('expired', 'this escrow request expired');
    if (current.state !== 'pending') throw new CofferError('conflict', `this escrow request is ${current.state}`);
    await this.db.transaction().execute(async (trx) => {
      if (!(await this.requests.approve(id, identity, new Date(), trx))) throw new CofferError('conflict', 'this escrow request changed meanwhile');
      await beforeCommit?.(trx);
    });
    return this.get(id);
  }

  /** The requester's single download of the wrapped KEK. */
  async download(
    id: string,
    identity: string,
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<EscrowDownload> {
    const current = await this.get(id);
    if (current.kms_key || current.kek_version === null) {
      throw badRequest(`this request exports key "${current.kms_key?.name ?? ''}": export it with POST /v1/kms/${current.namespace}/keys/{name}/export {"request_id": "${id}"}`);
    }
    this.checkDownload(current, identity);
    const kekVersion = current.kek_version;
    const row = await this.requests.getForDownload(id);
    const publicKey = parseEscrowPublicKey(row.public_key);
    // Wrapped before the transaction: loading a KEK needs a connection, and PGlite has one.
    const wrapped = await this.deps.keyring.withKekMaterial(row.namespace_id, kekVersion, (kek) => wrapForEscrow(kek, publicKey, current.algorithm as EscrowAlgorithm));
    await this.db.transaction().execute(async (trx) => {
      if (!(await this.requests.markDownloaded(id, new Date(), trx))) throw new CofferError('gone', 'this escrow export was already downloaded (single download)');
      await beforeCommit?.(trx);
    });
    return { ...(await this.get(id)), wrapped_key_material: wrapped.toString('base64') };
  }

  /** Only the requester, once, after a second identity approved, before it expires. */
  private checkDownload(current: EscrowRequest, identity: string): void {
    if (current.requested_by !== identity) throw new CofferError('permission_denied', 'only the requester uses an approved export request');
    if (current.state === 'downloaded') throw new CofferError('gone', 'this export request was already used (one approval, one export)');
    if (current.state === 'expired') throw new CofferError('expired', 'this export request expired');
    if (current.state !== 'approved') {
      throw new CofferError('conflict', 'this export request is not approved yet: a different identity must approve it (POST /v1/escrow/requests/{id}/approve)');
    }
  }
}
