/**
 * `client.kms`: named keys of a namespace (`kms.keys`), the operations on them,
 * and envelope encryption of data of any size (envelope.ts) under a data key.
 *
 * Bytes go in as Uint8Array or string (UTF-8) and come back as Buffer; the SDK
 * does the base64 of the wire. Operations change no state on the server, so
 * they are retried like reads; creating, rotating and deleting keys are not.
 * Every URL comes from `KMS_PATHS` (api/kms.ts), beside the wire types.
 */
import {
  kmsKeyNameProblem,
  KMS_PATHS,
  type KmsBatchItem,
  type KmsBatchOperation,
  type KmsBatchResponse,
  type KmsCiphertext,
  type KmsDataKey,
  type KmsHashAlgorithm,
  type KmsHmac,
  type KmsKeyConfigUpdate,
  type KmsKeyCreate,
  type KmsKeyExport,
  type KmsKeyExportApprovalRequest,
  type KmsKeyExportRequest,
  type KmsKeyImport,
  type KmsKeyInfo,
  type KmsKeyPage,
  type KmsKeySummary,
  type KmsMarshaling,
  type KmsPlaintext,
  type KmsPublicKeyInfo,
  type KmsRandom,
  type KmsSignature,
  type KmsSignatureAlgorithm,
  type KmsTrimResult,
  type KmsVerification,
} from './api/kms.js';
import type { EscrowRequest, ImportAlgorithm, ImportParams } from './api/keys.js';
import { constants, createCipheriv, createDecipheriv, privateDecrypt, publicEncrypt, randomBytes, KeyObject } from 'node:crypto';
import { envelopeDecrypt, envelopeEncrypt, transformFile, type EnvelopeMeta, type EnvelopeOptions, type FileOptions } from './envelope.js';
import { invalidArgument } from './errors.js';
import { checkNamespace } from './names.js';
import type { Transport } from './transport.js';
import type { PageOptions } from './types.js';

export type Bytes = Uint8Array | string;

function checkKeyName(name: string): string {
  const problem = kmsKeyNameProblem(name);
  if (problem) throw invalidArgument(`invalid key name ${JSON.stringify(name)}: ${problem}`);
  return name;
}

const b64 = (value: Bytes): string =>
  typeof value === 'string' ? Buffer.from(value, 'utf8').toString('base64') : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
const bytes = (value: string): Buffer => Buffer.from(value, 'base64');
const optB64 = (value: Bytes | undefined): string | undefined => (value === undefined ? undefined : b64(value));

export interface AadOption {
  /** Bound to the ciphertext: decrypt needs the same bytes. */
  associatedData?: Bytes;
}

export interface SignOptions {
  /** `input` is a digest already (of hashAlgorithm). */
  prehashed?: boolean;
  hashAlgorithm?: KmsHashAlgorithm;
  /** RSA: pss (default) or pkcs1v15. */
  signatureAlgorithm?: KmsSignatureAlgorithm;
  /** ECDSA: asn1 (default) or jws. */
  marshaling?: KmsMarshaling;
}

export interface DecryptedData {
  plaintext: Buffer;
  key_version: number;
}

export interface DataKey {
  /** The data key wrapped by the named key (store it with the data). */
  ciphertext: string;
  key_version: number;
  /** Mode 'plaintext' only: the key itself; overwrite it (fill(0)) when done. */
  plaintext?: Buffer;
}

/** RFC 5649's alternative IV, as the server (kms/byok.ts, kms/escrow.ts) and `openssl -id-aes256-wrap-pad` use. */
const KWP_IV = Buffer.from('A65959A6', 'hex');
const isKeyObject = (m: Uint8Array | KeyObject): m is KeyObject => m instanceof KeyObject;

/**
 * Opens a key export (KmsKeysApi.export) with the private half of the RSA key
 * it was wrapped under: the raw key bytes, or the PKCS#8 DER private key
 * (`material_format`). Overwrite the result (fill(0)) when done.
 */
export function unwrapKeyExport(exported: Pick<KmsKeyExport, 'algorithm' | 'wrapped_key_material'>, privateKey: KeyObject): Buffer {
  const wrapped = Buffer.from(exported.wrapped_key_material, 'base64');
  const rsa = (data: Buffer) => privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, data);
  if (exported.algorithm === 'RSAES_OAEP_SHA_256') return rsa(wrapped);
  const bytes = (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
  const ephemeral = rsa(wrapped.subarray(0, bytes));
  try {
    const kwp = createDecipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
    return Buffer.concat([kwp.update(wrapped.subarray(bytes)), kwp.final()]);
  } finally {
    ephemeral.fill(0);
  }
}

export class KmsKeysApi {
  constructor(private readonly http: Transport) {}

  async create(namespace: string, name: string, options: KmsKeyCreate): Promise<KmsKeyInfo> {
    return this.http.request({ method: 'POST', path: KMS_PATHS.key(checkNamespace(namespace), checkKeyName(name)), body: options, idempotent: false });
  }

  async read(namespace: string, name: string): Promise<KmsKeyInfo> {
    return this.http.request({ method: 'GET', path: KMS_PATHS.key(checkNamespace(namespace), checkKeyName(name)) });
  }

  /** One page; pass `next_cursor` back as `cursor`. */
  async list(namespace: string, options: PageOptions = {}): Promise<KmsKeyPage> {
    return this.http.request({ method: 'GET', path: KMS_PATHS.keyList(checkNamespace(namespace)), query: { limit: options.limit, cursor: options.cursor } });
  }

  async *listAll(namespace: string, options: { pageSize?: number } = {}): AsyncGenerator<KmsKeySummary> {
    let cursor: string | undefined;
    do {
      const page = await this.list(namespace, { limit: options.pageSize, cursor });
      yield* page.keys;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** Setting the same values again changes nothing, so this is retried. */
  async config(namespace: string, name: string, changes: KmsKeyConfigUpdate): Promise<KmsKeyInfo> {
    return this.http.request({ method: 'POST', path: KMS_PATHS.config(checkNamespace(namespace), checkKeyName(name)), body: changes, idempotent: true });
  }

  /** A new version takes new encryptions. Not retried: each call adds a version. */
  async rotate(namespace: string, name: string): Promise<KmsKeyInfo> {
    return this.http.request({ method: 'POST', path: KMS_PATHS.rotate(checkNamespace(namespace), checkKeyName(name)), body: {}, idempotent: false });
  }

  /** Destroys the versions below `minAvailableVersion` (at most min_decryption_version). */
  async trim(namespace: string, name: string, minAvailableVersion: number): Promise<KmsTrimResult> {
    return this.http.request({
      method: 'POST',
      path: KMS_PATHS.trim(checkNamespace(namespace), checkKeyName(name)),
      body: { min_available_version: minAvailableVersion },
      idempotent: true,
    });
  }

  /**
   * BYOK, step 1: a one-time RSA-3072 wrapping key of the namespace (24 hours).
   * Not retried: each call makes a wrapping key.
   */
  async importParams(namespace: string, name: string, algorithm: ImportAlgorithm = 'RSA_AES_KEY_WRAP_SHA_256'): Promise<ImportParams> {
    return this.http.request({ method: 'GET', path: KMS_PATHS.importParams(checkNamespace(namespace), checkKeyName(name)), query: { algorithm }, idempotent: false });
  }

  /** BYOK, step 2: a new key (origin external) from material wrapped under the import parameters. The token is spent either way. */
  async import(namespace: string, name: string, request: KmsKeyImport): Promise<KmsKeyInfo> {
    return this.http.request({ method: 'POST', path: KMS_PATHS.import(checkNamespace(namespace), checkKeyName(name)), body: request, idempotent: false });
  }

  /** The next version of an imported key from wrapped material. */
  async importVersion(namespace: string, name: string, request: { import_token: string; encrypted_key_material: string }): Promise<KmsKeyInfo> {
    return this.http.request({ method: 'POST', path: KMS_PATHS.importVersion(checkNamespace(namespace), checkKeyName(name)), body: request, idempotent: false });
  }

  /** One version of an exportable key, wrapped under `request.public_key` (see unwrapExport in the README). */
  /** With `request_id` (namespaces with kms_export_approval) the export uses the approval up: not retried. */
  async export(namespace: string, name: string, request: KmsKeyExportRequest): Promise<KmsKeyExport> {
    const path = KMS_PATHS.export(checkNamespace(namespace), checkKeyName(name));
    return this.http.request({ method: 'POST', path, body: request, idempotent: request.request_id === undefined });
  }

  /** Asks for a second identity's approval of an export (approved with `client.escrow.approve(id)`). */
  async requestExport(namespace: string, name: string, request: KmsKeyExportApprovalRequest): Promise<EscrowRequest> {
    return this.http.request({ method: 'POST', path: KMS_PATHS.exportRequests(checkNamespace(namespace), checkKeyName(name)), body: request, idempotent: false });
  }

  /**
   * BYOK in one call: gets import parameters, wraps `material` here
   * (RSA_AES_KEY_WRAP_SHA_256, so the server never sees it unwrapped in
   * transit) and imports it — as a new key with `create`, else as the next
   * version of the imported key. `material`: raw bytes of a symmetric key,
   * or a private key (KeyObject, or PEM/DER the caller parsed) for asymmetric types.
   */
  async importMaterial(namespace: string, name: string, material: Uint8Array | KeyObject, create?: KmsKeyCreate): Promise<KmsKeyInfo> {
    const params = await this.importParams(namespace, name, 'RSA_AES_KEY_WRAP_SHA_256');
    const raw = isKeyObject(material) ? material.export({ format: 'der', type: 'pkcs8' }) : Buffer.from(material.buffer, material.byteOffset, material.byteLength);
    const ephemeral = randomBytes(32);
    try {
      const head = publicEncrypt({ key: params.public_key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ephemeral);
      const kwp = createCipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
      const wrapped = { import_token: params.import_token, encrypted_key_material: Buffer.concat([head, kwp.update(raw), kwp.final()]).toString('base64') };
      return create ? await this.import(namespace, name, { ...create, ...wrapped }) : await this.importVersion(namespace, name, wrapped);
    } finally {
      ephemeral.fill(0);
      if (isKeyObject(material)) raw.fill(0);
    }
  }

  /** Only a key with deletion_allowed; everything it encrypted is lost. */
  async delete(namespace: string, name: string): Promise<{ namespace: string; name: string; versions_deleted: number }> {
    return this.http.request({ method: 'DELETE', path: KMS_PATHS.key(checkNamespace(namespace), checkKeyName(name)) });
  }
}

export class KmsApi {
  readonly keys: KmsKeysApi;

  constructor(private readonly http: Transport) {
    this.keys = new KmsKeysApi(http);
  }

  private op<T>(namespace: string, operation: 'encrypt' | 'decrypt' | 'rewrap' | 'sign' | 'verify' | 'hmac', name: string, body: object): Promise<T> {
    const path = KMS_PATHS[operation](checkNamespace(namespace), checkKeyName(name));
    return this.http.request({ method: 'POST', path, body, idempotent: true });
  }

  /** At most KMS_MAX_PLAINTEXT_BYTES (64 KiB); larger data: encryptStream/encryptFile. */
  async encrypt(namespace: string, name: string, plaintext: Bytes, options: AadOption & { keyVersion?: number } = {}): Promise<KmsCiphertext> {
    return this.op(namespace, 'encrypt', name, { plaintext: b64(plaintext), associated_data: optB64(options.associatedData), key_version: options.keyVersion });
  }

  async decrypt(namespace: string, name: string, ciphertext: string, options: AadOption = {}): Promise<DecryptedData> {
    const r = await this.op<KmsPlaintext>(namespace, 'decrypt', name, { ciphertext, associated_data: optB64(options.associatedData) });
    return { plaintext: bytes(r.plaintext), key_version: r.key_version };
  }

  /** The ciphertext under the latest (or `keyVersion`) version; the plaintext never leaves the server. */
  async rewrap(namespace: string, name: string, ciphertext: string, options: AadOption & { keyVersion?: number } = {}): Promise<KmsCiphertext> {
    return this.op(namespace, 'rewrap', name, { ciphertext, associated_data: optB64(options.associatedData), key_version: options.keyVersion });
  }

  /**
   * Up to KMS_MAX_BATCH_ITEMS items in the wire's form (base64 fields), with a
   * result or an error per item in order; `failed` counts the errors.
   */
  async batch(namespace: string, name: string, operation: KmsBatchOperation, items: KmsBatchItem[]): Promise<KmsBatchResponse> {
    const path = KMS_PATHS.batch(checkNamespace(namespace), checkKeyName(name), operation);
    return this.http.request({ method: 'POST', path, body: { items }, idempotent: true });
  }

  /** A fresh data key (128, 256 or 512 bits) wrapped by the named key; 'plaintext' mode also returns the key. */
  async datakey(
    namespace: string,
    name: string,
    options: AadOption & { mode?: 'plaintext' | 'wrapped'; bits?: 128 | 256 | 512 } = {},
  ): Promise<DataKey> {
    const mode = options.mode ?? 'plaintext';
    const path = KMS_PATHS.datakey(checkNamespace(namespace), checkKeyName(name), mode);
    const r = await this.http.request<KmsDataKey>({
      method: 'POST',
      path,
      body: { bits: options.bits, associated_data: optB64(options.associatedData) },
      idempotent: true,
    });
    return { ciphertext: r.ciphertext, key_version: r.key_version, ...(r.plaintext !== undefined ? { plaintext: bytes(r.plaintext) } : {}) };
  }

  async sign(namespace: string, name: string, input: Bytes, options: SignOptions & { keyVersion?: number } = {}): Promise<KmsSignature> {
    return this.op(namespace, 'sign', name, { input: b64(input), ...signFields(options), key_version: options.keyVersion });
  }

  /** False for a signature that does not match; a malformed one is an error. */
  async verify(namespace: string, name: string, input: Bytes, signature: string, options: SignOptions = {}): Promise<boolean> {
    const r = await this.op<KmsVerification>(namespace, 'verify', name, { input: b64(input), signature, ...signFields(options) });
    return r.valid;
  }

  async hmac(namespace: string, name: string, input: Bytes, options: { keyVersion?: number } = {}): Promise<KmsHmac> {
    return this.op(namespace, 'hmac', name, { input: b64(input), key_version: options.keyVersion });
  }

  /** Compared on the server in constant time. */
  async verifyHmac(namespace: string, name: string, input: Bytes, hmac: string): Promise<boolean> {
    const r = await this.op<KmsVerification>(namespace, 'verify', name, { input: b64(input), hmac });
    return r.valid;
  }

  /** The public key (PEM and JWK) of an asymmetric key, for whoever may verify. */
  async publicKey(namespace: string, name: string, options: { version?: number } = {}): Promise<KmsPublicKeyInfo> {
    return this.http.request({ method: 'GET', path: KMS_PATHS.publicKey(checkNamespace(namespace), checkKeyName(name)), query: { version: options.version } });
  }

  /** Random bytes from the server's CSPRNG (or HSM), at most KMS_MAX_RANDOM_BYTES. */
  async random(count = 32): Promise<Buffer> {
    const r = await this.http.request<KmsRandom>({ method: 'GET', path: KMS_PATHS.random, query: { bytes: count, format: 'base64' } });
    return bytes(r.random);
  }

  /** The envelope (envelope.ts) of `source` under a fresh 256-bit data key of the named key. */
  async *encryptStream(namespace: string, name: string, source: AsyncIterable<Uint8Array>, options: EnvelopeOptions = {}): AsyncGenerator<Buffer> {
    const key = await this.datakey(namespace, name, { mode: 'plaintext', bits: 256 });
    const meta: EnvelopeMeta = { namespace, key: name, key_version: key.key_version, wrapped_key: key.ciphertext };
    try {
      yield* envelopeEncrypt(source, key.plaintext!, meta, options);
    } finally {
      key.plaintext?.fill(0);
    }
  }

  /**
   * The plaintext of an envelope; the data key is unwrapped by the key its
   * header names (in `namespace` when given, else the header's namespace).
   */
  decryptStream(source: AsyncIterable<Uint8Array>, options: { namespace?: string } = {}): AsyncGenerator<Buffer> {
    return envelopeDecrypt(source, async (meta) => (await this.decrypt(options.namespace ?? meta.namespace, meta.key, meta.wrapped_key)).plaintext);
  }

  /** Encrypts a file of any size to `output` (written whole or not at all). */
  async encryptFile(namespace: string, name: string, input: string, output: string, options: FileOptions & EnvelopeOptions = {}) {
    return transformFile(input, output, (source) => this.encryptStream(namespace, name, source, options), { ...options, mode: options.mode ?? 0o644 });
  }

  /** Decrypts an envelope file to `output` (0600 unless `mode`), which appears only once every chunk is authenticated. */
  async decryptFile(input: string, output: string, options: FileOptions & { namespace?: string } = {}) {
    return transformFile(input, output, (source) => this.decryptStream(source, options), options);
  }
}

function signFields(o: SignOptions) {
  return { prehashed: o.prehashed, hash_algorithm: o.hashAlgorithm, signature_algorithm: o.signatureAlgorithm, marshaling_algorithm: o.marshaling };
}
