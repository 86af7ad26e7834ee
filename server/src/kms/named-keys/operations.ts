/**
 * What applications do with named keys: encrypt/decrypt (and batches of
 * them), rewrap, data keys, sign/verify, HMAC, random bytes. Inputs and
 * outputs are the wire's (base64, `coffer:v<n>:…`, see ciphertext.ts); each
 * call loads the key once, unwraps only the versions it needs and zeroes its
 * copies before returning. Rows, unwrapped versions and parsed private keys
 * come from the KMS key cache (key-cache.ts) when it has them. Plaintext never
 * outlives the call except in the answer.
 */
import { constants, createHmac, privateDecrypt, publicEncrypt, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import {
  KMS_DATAKEY_BITS,
  KMS_MAX_BATCH_ITEMS,
  KMS_MAX_PLAINTEXT_BYTES,
  KMS_MAX_RANDOM_BYTES,
  type KmsBatchItem,
  type KmsBatchOperation,
  type KmsBatchResponse,
  type KmsBatchResult,
  type KmsCiphertext,
  type KmsDataKey,
  type KmsDataKeyRequest,
  type KmsDecryptRequest,
  type KmsEncryptRequest,
  type KmsHmac,
  type KmsHmacRequest,
  type KmsHmacVerifyRequest,
  type KmsOperation,
  type KmsPlaintext,
  type KmsRandom,
  type KmsRandomRequest,
  type KmsRewrapRequest,
  type KmsSignature,
  type KmsSignRequest,
  type KmsVerification,
  type KmsVerifyRequest,
} from '@coffer/sdk/api';
import { zeroize } from '../../crypto/aead.js';
import { aad } from '../../crypto/context.js';
import { rawOpen, rawSealAfter } from '../../crypto/raw-aead.js';
import { badRequest, CofferError } from '../../errors.js';
import type { KmsKeyRow } from '../../storage/repos/kms-keys.js';
import { ciphertextHeader, decodeBase64, decodeVersioned, encodeCiphertext, encodeVersioned, keyTag, parseCiphertext, toBase64 } from './ciphertext.js';
import { HASHES, KEY_TYPES } from './key-types.js';
import type { CachedVersion, KmsKeyCache } from './key-cache.js';
import type { KeyStore } from './key-store.js';
import { privateKeyOf } from './material.js';
import { resolveSignOptions, signOffLoop, verifyWith } from './signing.js';

const EMPTY = new Uint8Array(0);

/**
 * One call's view of a key: its row, and copies of the versions it needs
 * (kept for the rest of the call, zeroed by close()). The cache's own buffers
 * are only copied: an invalidation during one of the call's awaits zeroes them.
 */
class KeySession {
  private readonly material = new Map<number, Uint8Array>();
  private readonly privateKeys = new Map<number, KeyObject>();
  private readonly cached = new Map<number, CachedVersion>();
  /** AAD of each version for empty associated data (every item of a typical batch): encoded once. */
  private readonly bareAads = new Map<number, Uint8Array>();

  constructor(
    private readonly store: KeyStore,
    private readonly cache: KmsKeyCache,
    private readonly where: { namespace: string; name: string; generation: number },
    readonly row: KmsKeyRow,
  ) {}

  get type() {
    return this.row.type;
  }

  /** Loads (once) every version in `versions`, so items of a batch do not each query. */
  async load(versions: Iterable<number>): Promise<void> {
    const { namespace, name, generation } = this.where;
    const missing: number[] = [];
    for (const v of new Set(versions)) {
      if (this.material.has(v)) continue;
      const hit = this.cache.version(namespace, name, this.row.id, v);
      if (hit) {
        this.material.set(v, new Uint8Array(hit.material));
        this.cached.set(v, hit);
      } else {
        missing.push(v);
      }
    }
    if (missing.length === 0) return;
    const rows = await this.store.versions(this.row, missing);
    for (const v of missing) {
      const material = await this.store.open(this.row, rows.get(v)!);
      this.material.set(v, material);
      const stored = this.cache.putVersion(namespace, name, this.row.id, v, material, generation);
      if (stored) this.cached.set(v, stored);
    }
  }

  /** Material of a loaded version. */
  key(version: number): Uint8Array {
    const m = this.material.get(version);
    if (!m) throw new CofferError('internal', `version ${version} was not loaded`);
    return m;
  }

  get hsm(): boolean {
    return this.row.hsm;
  }

  /** The token label of a loaded version of an HSM-resident key. */
  hsmLabel(version: number): string {
    return this.store.hsm.labelOf(this.key(version), this.row.namespace_id, this.row.id, version);
  }

  /** The key that verifies and encrypts: the public key from the token (HSM-resident), else the private KeyObject. */
  async publicSide(version: number): Promise<KeyObject> {
    return this.row.hsm ? this.store.hsm.publicKey(this.hsmLabel(version)) : this.privateKey(version);
  }

  privateKey(version: number): KeyObject {
    let k = this.privateKeys.get(version) ?? this.cached.get(version)?.privateKey;
    if (!k) {
      k = privateKeyOf(this.key(version));
      // Parsing PKCS#8 costs more than an Ed25519 signature: keep it with the cached version.
      const entry = this.cached.get(version);
      if (entry) entry.privateKey = k;
    }
    this.privateKeys.set(version, k);
    return k;
  }

  /** The AAD of data under `version` with the caller's associated data (crypto/context.ts aad.kmsData). */
  aad(version: number, associated: Uint8Array): Uint8Array {
    if (associated.length > 0) return aad.kmsData(this.row.id, version, associated);
    let bare = this.bareAads.get(version);
    if (!bare) {
      bare = aad.kmsData(this.row.id, version, associated);
      this.bareAads.set(version, bare);
    }
    return bare;
  }

  close(): void {
    for (const m of this.material.values()) zeroize(m);
    this.material.clear();
    this.privateKeys.clear();
    this.cached.clear();
  }
}

export class KeyOperations {
  constructor(
    private readonly store: KeyStore,
    private readonly cache: KmsKeyCache,
  ) {}

  async encrypt(namespace: string, name: string, req: KmsEncryptRequest): Promise<KmsCiphertext> {
    return this.withKey(namespace, name, 'encrypt', async (s) => {
      const version = this.store.encryptionVersion(s.row, req.key_version);
      await s.load([version]);
      return await this.encryptItem(s, req, version);
    });
  }

  async decrypt(namespace: string, name: string, req: KmsDecryptRequest): Promise<KmsPlaintext> {
    return this.withKey(namespace, name, 'decrypt', async (s) => {
      const parsed = this.checkCiphertext(s, req.ciphertext);
      await s.load([parsed.version]);
      return await this.decryptItem(s, req);
    });
  }

  /** Decrypts and encrypts again under the encryption version, inside the server: no plaintext is returned. */
  async rewrap(namespace: string, name: string, req: KmsRewrapRequest): Promise<KmsCiphertext> {
    return this.withKey(namespace, name, 'rewrap', async (s) => {
      const from = this.checkCiphertext(s, req.ciphertext).version;
      const to = this.store.encryptionVersion(s.row, req.key_version);
      await s.load([from, to]);
      return await this.rewrapItem(s, req);
    });
  }

  /**
   * Up to KMS_MAX_BATCH_ITEMS items with one key: each item's result or error
   * in input order, so one bad item does not fail the others. Trouble with the
   * key itself (missing, not allowed, altered at rest) fails the whole call.
   */
  async batch(namespace: string, name: string, operation: KmsBatchOperation, items: readonly KmsBatchItem[]): Promise<KmsBatchResponse> {
    if (operation !== 'encrypt' && operation !== 'decrypt' && operation !== 'rewrap') throw badRequest('batch operation is encrypt, decrypt or rewrap');
    if (!Array.isArray(items) || items.length === 0) throw badRequest('a batch has at least one item');
    if (items.length > KMS_MAX_BATCH_ITEMS) throw badRequest(`a batch has at most ${KMS_MAX_BATCH_ITEMS} items`);
    return this.withKey(namespace, name, operation, async (s) => {
      // The versions the items need, loaded once; an item naming a version it may not use fails alone.
      const wanted = new Set<number>();
      for (const item of items) {
        if (typeof item !== 'object' || item === null) continue;
        try {
          if (operation !== 'encrypt') wanted.add(this.checkCiphertext(s, (item as KmsDecryptRequest).ciphertext).version);
          if (operation !== 'decrypt') wanted.add(this.store.encryptionVersion(s.row, (item as KmsEncryptRequest).key_version));
        } catch (err) {
          if (!(err instanceof CofferError) || err.code !== 'invalid_request') throw err;
        }
      }
      await s.load(wanted);
      const results: KmsBatchResult[] = [];
      let failed = 0;
      for (const item of items) {
        try {
          if (typeof item !== 'object' || item === null) throw badRequest('each item is an object');
          if (operation === 'encrypt') {
            results.push(await this.encryptItem(s, item as KmsEncryptRequest, this.store.encryptionVersion(s.row, (item as KmsEncryptRequest).key_version)));
          } else if (operation === 'decrypt') {
            results.push(await this.decryptItem(s, item as KmsDecryptRequest));
          } else {
            results.push(await this.rewrapItem(s, item as KmsRewrapRequest));
          }
        } catch (err) {
          // Only the caller's own mistakes are per item; anything else (integrity, a bug) fails the call.
          if (!(err instanceof CofferError) || (err.code !== 'invalid_request' && err.code !== 'payload_too_large')) throw err;
          failed++;
          results.push({ error: { code: err.code, message: err.message } });
        }
      }
      return { results, failed };
    });
  }

  /** A fresh data key, returned wrapped by the named key (and in plaintext in 'plaintext' mode). */
  async datakey(namespace: string, name: string, req: KmsDataKeyRequest): Promise<KmsDataKey> {
    if (req.mode !== 'plaintext' && req.mode !== 'wrapped') throw badRequest('mode is "plaintext" or "wrapped"');
    const bits = req.bits ?? 256;
    if (!(KMS_DATAKEY_BITS as readonly number[]).includes(bits)) throw badRequest(`bits is one of ${KMS_DATAKEY_BITS.join(', ')}`);
    return this.withKey(namespace, name, 'datakey', async (s) => {
      const version = this.store.encryptionVersion(s.row, undefined);
      await s.load([version]);
      const dataKey = new Uint8Array(randomBytes(bits / 8));
      try {
        const wrapped = await this.seal(s, version, dataKey, this.associated(req.associated_data));
        return req.mode === 'plaintext' ? { ...wrapped, plaintext: toBase64(dataKey) } : wrapped;
      } finally {
        zeroize(dataKey);
      }
    });
  }

  async sign(namespace: string, name: string, req: KmsSignRequest): Promise<KmsSignature> {
    return this.withKey(namespace, name, 'sign', async (s) => {
      const input = decodeBase64(req.input, 'input');
      const options = resolveSignOptions(s.type, signOptionsOf(req), input);
      const version = this.store.encryptionVersion(s.row, req.key_version);
      await s.load([version]);
      const signature = s.hsm ? await this.store.hsm.sign(s.type, s.hsmLabel(version), input, options) : await signOffLoop(s.type, s.privateKey(version), input, options);
      return { signature: encodeVersioned(version, signature), key_version: version };
    });
  }

  /**
   * Checks a signature (signing keys) or an HMAC (HMAC keys: pass it as
   * `signature`, or use hmacVerify). A signature that does not match is
   * `valid: false`; a malformed request or a refused version is a 400.
   */
  async verify(namespace: string, name: string, req: KmsVerifyRequest): Promise<KmsVerification> {
    return this.withKey(namespace, name, 'verify', async (s) => {
      if (KEY_TYPES[s.type].family === 'hmac') return this.hmacCheck(s, req.input, req.signature);
      const input = decodeBase64(req.input, 'input');
      const options = resolveSignOptions(s.type, signOptionsOf(req), input);
      const { version, bytes } = decodeVersioned(req.signature, 'signature');
      this.store.checkDecryptionVersion(s.row, version);
      await s.load([version]);
      return { valid: verifyWith(s.type, await s.publicSide(version), input, bytes, options) };
    });
  }

  async hmac(namespace: string, name: string, req: KmsHmacRequest): Promise<KmsHmac> {
    return this.withKey(namespace, name, 'hmac', async (s) => {
      const input = decodeBase64(req.input, 'input');
      const version = this.store.encryptionVersion(s.row, req.key_version);
      await s.load([version]);
      return { hmac: encodeVersioned(version, await this.mac(s, version, input)), key_version: version };
    });
  }

  /** Checks an HMAC in constant time (the `verify` capability). */
  async hmacVerify(namespace: string, name: string, req: KmsHmacVerifyRequest): Promise<KmsVerification> {
    return this.withKey(namespace, name, 'verify', async (s) => {
      if (KEY_TYPES[s.type].family !== 'hmac') throw badRequest(`key "${name}" is a ${s.type} key, not an HMAC key`);
      return this.hmacCheck(s, req.input, req.hmac);
    });
  }

  /** Bytes from the server's CSPRNG (no key involved). */
  random(req: KmsRandomRequest): KmsRandom {
    const n = req.bytes ?? 32;
    if (!Number.isInteger(n) || n < 1 || n > KMS_MAX_RANDOM_BYTES) throw badRequest(`bytes is a whole number from 1 to ${KMS_MAX_RANDOM_BYTES}`);
    const format = req.format ?? 'base64';
    if (format !== 'base64' && format !== 'hex') throw badRequest('format is "base64" or "hex"');
    const bytes = randomBytes(n);
    return { random: bytes.toString(format) };
  }

  // --- items -------------------------------------------------------------

  private async encryptItem(s: KeySession, req: KmsEncryptRequest, version: number): Promise<KmsCiphertext> {
    const plaintext = decodeBase64(req.plaintext, 'plaintext');
    try {
      if (plaintext.length > KMS_MAX_PLAINTEXT_BYTES) {
        throw new CofferError(
          'payload_too_large',
          `plaintext is ${plaintext.length} bytes; one encrypt takes at most ${KMS_MAX_PLAINTEXT_BYTES} (64 KiB). ` +
            'For larger data request a data key (datakey) and encrypt locally with it (envelope encryption)',
        );
      }
      return await this.seal(s, version, plaintext, this.associated(req.associated_data));
    } finally {
      zeroize(plaintext);
    }
  }

  private async decryptItem(s: KeySession, req: KmsDecryptRequest): Promise<KmsPlaintext> {
    const { version, plaintext } = await this.open(s, req.ciphertext, this.associated(req.associated_data));
    try {
      return { plaintext: toBase64(plaintext), key_version: version };
    } finally {
      zeroize(plaintext);
    }
  }

  private async rewrapItem(s: KeySession, req: KmsRewrapRequest): Promise<KmsCiphertext> {
    const associated = this.associated(req.associated_data);
    const { plaintext } = await this.open(s, req.ciphertext, associated);
    try {
      return await this.seal(s, this.store.encryptionVersion(s.row, req.key_version), plaintext, associated);
    } finally {
      zeroize(plaintext);
    }
  }

  // --- primitives ----------------------------------------------------------

  private async seal(s: KeySession, version: number, plaintext: Uint8Array, associated: Uint8Array): Promise<KmsCiphertext> {
    const spec = KEY_TYPES[s.type];
    const context = s.aad(version, associated);
    if (spec.family === 'aead' && s.hsm) {
      // The same body as rawSeal's (nonce ‖ ciphertext ‖ tag): clients cannot tell the keys apart.
      const body = await this.store.hsm.sealGcm(s.hsmLabel(version), plaintext, context);
      return { ciphertext: encodeCiphertext(version, spec.format!, s.row.id, body), key_version: version };
    }
    if (spec.family === 'aead') {
      // Sealed straight after the ciphertext header: one buffer, one base64.
      const header = ciphertextHeader(spec.format!, s.row.id);
      const sealed = rawSealAfter(header, s.type === 'aes256-gcm' ? 'aes-256-gcm' : 'xchacha20-poly1305', s.key(version), plaintext, context);
      return { ciphertext: encodeVersioned(version, sealed), key_version: version };
    }
    // Encrypting needs only the public side (an HSM-resident key's private half stays in the token).
    const key = await s.publicSide(version);
    const max = Math.ceil(key.asymmetricKeyDetails!.modulusLength! / 8) - 2 * 32 - 2;
    if (plaintext.length > max) {
      throw badRequest(`a ${s.type} key encrypts at most ${max} bytes (RSA-OAEP-SHA-256); use a symmetric key or a data key for more`);
    }
    const body = new Uint8Array(publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: context }, plaintext));
    return { ciphertext: encodeCiphertext(version, spec.format!, s.row.id, body), key_version: version };
  }

  /** Every check in the order that gives the clearest message; a failed open is the caller's ciphertext or AAD. */
  private async open(s: KeySession, ciphertext: string, associated: Uint8Array): Promise<{ version: number; plaintext: Uint8Array }> {
    const parsed = this.checkCiphertext(s, ciphertext);
    const context = s.aad(parsed.version, associated);
    let plaintext: Uint8Array | null;
    if (s.hsm) {
      const label = s.hsmLabel(parsed.version);
      plaintext = KEY_TYPES[s.type].family === 'aead' ? await this.store.hsm.openGcm(label, parsed.body, context) : await this.store.hsm.openRsaOaep(label, parsed.body, context);
    } else if (KEY_TYPES[s.type].family === 'aead') {
      plaintext = rawOpen(s.type === 'aes256-gcm' ? 'aes-256-gcm' : 'xchacha20-poly1305', s.key(parsed.version), parsed.body, context);
    } else {
      try {
        const out = privateDecrypt({ key: s.privateKey(parsed.version), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: context }, parsed.body);
        plaintext = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      } catch {
        plaintext = null;
      }
    }
    if (!plaintext) {
      throw badRequest(`decryption failed: the ciphertext was altered or the associated_data differs from the one it was encrypted with`);
    }
    return { version: parsed.version, plaintext };
  }

  /** Format, key and version checks of a ciphertext string (no cryptography yet). */
  private checkCiphertext(s: KeySession, ciphertext: string) {
    const parsed = parseCiphertext(ciphertext);
    const spec = KEY_TYPES[s.type];
    if (!timingSafeEqual(parsed.tag, keyTag(s.row.id))) throw badRequest(`this ciphertext was not made by key "${s.row.name}"`);
    if (parsed.format !== spec.format) throw badRequest(`this ciphertext's format (${parsed.format}) is not the one of a ${s.type} key`);
    this.store.checkDecryptionVersion(s.row, parsed.version);
    return parsed;
  }

  private async mac(s: KeySession, version: number, input: Uint8Array): Promise<Uint8Array> {
    if (s.hsm) return this.store.hsm.hmac(s.type, s.hsmLabel(version), input);
    return createHmac(HASHES[KEY_TYPES[s.type].hash!].node, s.key(version)).update(input).digest();
  }

  private async hmacCheck(s: KeySession, inputB64: string, value: string): Promise<KmsVerification> {
    const input = decodeBase64(inputB64, 'input');
    const { version, bytes } = decodeVersioned(value, 'hmac');
    this.store.checkDecryptionVersion(s.row, version);
    await s.load([version]);
    const expected = await this.mac(s, version, input);
    return { valid: bytes.length === expected.length && timingSafeEqual(bytes, expected) };
  }

  private associated(value: string | undefined): Uint8Array {
    return value === undefined || value === '' ? EMPTY : decodeBase64(value, 'associated_data');
  }

  /** Finds the key, checks that its type supports `operation`, runs `fn`, and zeroes what it unwrapped. */
  private async withKey<T>(namespace: string, name: string, operation: KmsOperation, fn: (s: KeySession) => Promise<T>): Promise<T> {
    // Before any query: a change invalidated meanwhile is not cached (key-cache.ts).
    const generation = this.cache.generation;
    let row = this.cache.key(namespace, name)?.row;
    if (!row) {
      const found = await this.store.find(namespace, name);
      row = found.row;
      this.cache.putKey(namespace, name, found.namespaceId, row, generation);
    }
    if (!KEY_TYPES[row.type].operations.includes(operation)) {
      throw badRequest(`key "${name}" is a ${row.type} key, which does not support ${operation}`);
    }
    const session = new KeySession(this.store, this.cache, { namespace, name, generation }, row);
    try {
      return await fn(session);
    } finally {
      session.close();
    }
  }
}

function signOptionsOf(req: KmsSignRequest | KmsVerifyRequest) {
  if (req.prehashed !== undefined && typeof req.prehashed !== 'boolean') throw badRequest('prehashed must be true or false');
  return { prehashed: req.prehashed === true, hash: req.hash_algorithm, signatureAlgorithm: req.signature_algorithm, marshaling: req.marshaling_algorithm };
}
