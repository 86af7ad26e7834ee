/**
 * HSM-resident named keys (`"hsm": true`, PKCS#11 seal only): each version is
 * generated in the token as a sensitive, non-extractable token object labelled
 * <prefix>-kms-<namespace id>-<key id>-v<version>, and every operation with its
 * secret runs in the token (seal/pkcs11-kms.ts). Operations with the public
 * half of a key pair (verify, RSA encryption) run in node with the public key
 * read from the token: they involve no secret.
 *
 * The version's row holds, in place of wrapped key material, a reference
 * ("coffer-hsm:" + the label) wrapped by the namespace KEK like any material:
 * a row swapped or moved to another key fails to open as it does for software
 * keys, backup verification and the KEK rewrap treat every row alike (the
 * rewrap moves the reference, never the token object), and crypto-shredding
 * destroys the objects in the token (the shred sweep calls destroyNamespace
 * first and does not proceed while the token cannot be reached).
 */
import { createHash, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { KmsHashAlgorithm, KmsKeyType } from '@coffer/sdk/api';
import { badRequest, CofferError } from '../../errors.js';
import { namedKeysOn, type HsmKeySpec, type Pkcs11NamedKeys } from '../../seal/pkcs11-kms.js';
import type { ImportDevice } from '../../seal/seal.js';
import { oaepDecodeSha256 } from '../byok.js';
import { HASHES, KEY_TYPES } from './key-types.js';
import type { ResolvedSign } from './signing.js';

const REF_PREFIX = 'coffer-hsm:';
const encoder = new TextEncoder();

/** The key types an HSM (SoftHSM2 2.6) can hold, and how each is generated there. */
export const HSM_KEY_TYPES: Readonly<Partial<Record<KmsKeyType, HsmKeySpec>>> = {
  'aes256-gcm': { kind: 'aes', bytes: 32 },
  'hmac-sha256': { kind: 'hmac', bytes: 32 },
  'hmac-sha512': { kind: 'hmac', bytes: 64 },
  'ecdsa-p256': { kind: 'ec', curve: 'P-256' },
  'ecdsa-p384': { kind: 'ec', curve: 'P-384' },
  'rsa-2048': { kind: 'rsa', bits: 2048 },
  'rsa-3072': { kind: 'rsa', bits: 3072 },
  'rsa-4096': { kind: 'rsa', bits: 4096 },
};

const DIGEST_INFO: Readonly<Record<KmsHashAlgorithm, Buffer>> = {
  'sha2-256': Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  'sha2-384': Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  'sha2-512': Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

/** A key generated in the token under a provisional label, not yet a version of anything. */
export interface PendingHsmKey {
  label: string;
}

export class HsmKeys {
  constructor(private readonly device: () => ImportDevice | null) {}

  /** Refuses what an HSM-resident key cannot be, before anything is generated. */
  checkCreate(type: KmsKeyType, req: { exportable?: boolean | undefined }): void {
    if (!HSM_KEY_TYPES[type]) {
      throw new CofferError('unsupported_algorithm', `HSM-resident keys are ${Object.keys(HSM_KEY_TYPES).join(', ')}; a ${type} key cannot be HSM-resident (the HSM does not support it)`);
    }
    if (req.exportable === true) throw badRequest('an HSM-resident key cannot be exportable: its material never leaves the HSM');
    this.dev();
  }

  /** Generates a key of `type` in the token under a provisional label of the key (swept with it if never used). */
  async generate(type: KmsKeyType, namespaceId: string, keyId: string): Promise<PendingHsmKey> {
    const spec = HSM_KEY_TYPES[type];
    if (!spec) throw new CofferError('unsupported_algorithm', `a ${type} key cannot be HSM-resident`);
    const { device, keys } = this.dev();
    const label = device.namedKeyLabel(namespaceId, keyId, `pending-${randomBytes(8).toString('hex')}`);
    await keys.generate(spec, label);
    return { label };
  }

  /** Names the pending key as version `version` and returns the reference the version's row stores (the caller zeroes it). */
  async adopt(pending: PendingHsmKey, namespaceId: string, keyId: string, version: number): Promise<Uint8Array> {
    const { device, keys } = this.dev();
    const label = device.namedKeyLabel(namespaceId, keyId, `v${version}`);
    // Left over from an attempt that failed after naming its key (the row was never committed).
    await keys.destroy({ labels: [label] });
    if ((await keys.relabel(pending.label, label)) === 0) throw new CofferError('unavailable', 'HSM: the key just generated is gone from the token');
    return encoder.encode(REF_PREFIX + label);
  }

  /** Removes a pending key that did not become a version; best effort (the key's and namespace's sweeps remove strays). */
  async discard(pending: PendingHsmKey): Promise<void> {
    await this.dev().keys.destroy({ labels: [pending.label] }).catch(() => undefined);
  }

  /**
   * The token label of an opened reference, checked against where the row says it belongs
   * (the KEK's AAD already binds it; this keeps a reference from ever naming another key's object).
   */
  labelOf(reference: Uint8Array, namespaceId: string, keyId: string, version: number): string {
    const text = Buffer.from(reference.buffer, reference.byteOffset, reference.byteLength).toString('utf8');
    const suffix = `-kms-${namespaceId}-${keyId}-v${version}`;
    if (!text.startsWith(REF_PREFIX) || !text.endsWith(suffix)) throw new CofferError('integrity_error', `the HSM reference of key version ${version} does not match its row`);
    return text.slice(REF_PREFIX.length);
  }

  /** Destroys the token objects of these versions of a key. */
  async destroyVersions(namespaceId: string, keyId: string, versions: readonly number[]): Promise<number> {
    const { device, keys } = this.dev();
    return keys.destroy({ labels: versions.map((v) => device.namedKeyLabel(namespaceId, keyId, `v${v}`)) });
  }

  /** Destroys every object of a key (its versions and any provisional leftovers). */
  async destroyKey(namespaceId: string, keyId: string): Promise<number> {
    const { device, keys } = this.dev();
    return keys.destroy({ prefix: device.namedKeyLabel(namespaceId, keyId) + '-' });
  }

  /**
   * Destroys every object of a namespace's named keys (crypto-shredding). `required`: the
   * namespace has HSM-resident keys, so a missing or unreachable token is an error; otherwise
   * only leftovers are swept, when a token is there.
   */
  async destroyNamespace(namespaceId: string, required: boolean): Promise<number> {
    let dev: { device: ImportDevice; keys: Pkcs11NamedKeys };
    try {
      dev = this.dev();
    } catch (err) {
      if (required) throw err;
      return 0;
    }
    try {
      return await dev.keys.destroy({ prefix: dev.device.namedKeyLabel(namespaceId) + '-' });
    } catch (err) {
      if (required) throw err;
      return 0;
    }
  }

  /** Labels of a namespace's objects in the token (tests). */
  async objectLabels(namespaceId: string): Promise<string[]> {
    const { device, keys } = this.dev();
    return keys.labels(device.namedKeyLabel(namespaceId) + '-');
  }

  /** The token's operations on named keys (tests read attributes through it). */
  tokenKeys(): Pkcs11NamedKeys {
    return this.dev().keys;
  }

  // --- operations ---------------------------------------------------------

  /** AES-256-GCM body as the software path makes it: nonce (12) ‖ ciphertext ‖ tag (16). */
  async sealGcm(label: string, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const iv = randomBytes(12);
    const sealed = await this.dev().keys.encryptGcm(label, iv, aad, plaintext);
    const body = new Uint8Array(12 + sealed.length);
    body.set(iv, 0);
    body.set(sealed, 12);
    return body;
  }

  /** null when the body was altered or the AAD differs. */
  async openGcm(label: string, body: Uint8Array, aad: Uint8Array): Promise<Uint8Array | null> {
    if (body.length < 12 + 16) return null;
    const plain = await this.dev().keys.decryptGcm(label, body.subarray(0, 12), aad, body.subarray(12));
    if (!plain) return null;
    const out = new Uint8Array(plain);
    plain.fill(0);
    return out;
  }

  /** RSAES-OAEP-SHA-256 decryption: raw RSA in the token, OAEP decoded here (label = the binding). null when it fails. */
  async openRsaOaep(label: string, body: Uint8Array, oaepLabel: Uint8Array): Promise<Uint8Array | null> {
    const publicKey = await this.publicKey(label);
    const k = Math.ceil(publicKey.asymmetricKeyDetails!.modulusLength! / 8);
    if (body.length !== k) return null;
    const em = await this.dev().keys.rawRsaDecrypt(label, body);
    if (!em) return null;
    try {
      return oaepDecodeSha256(em, oaepLabel);
    } catch {
      return null;
    } finally {
      em.fill(0);
    }
  }

  async hmac(type: KmsKeyType, label: string, input: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await this.dev().keys.hmac(label, KEY_TYPES[type].hash === 'sha2-512' ? 'sha512' : 'sha256', input));
  }

  /** A signature in the format the software path gives for the same options (signing.ts). */
  async sign(type: KmsKeyType, label: string, input: Uint8Array, o: ResolvedSign): Promise<Uint8Array> {
    const spec = KEY_TYPES[type];
    const digest = o.prehashed ? input : createHash(HASHES[o.hash].node).update(input).digest();
    const keys = this.dev().keys;
    if (spec.family === 'ecdsa') {
      const size = spec.namedCurve === 'P-384' ? 48 : 32;
      const raw = await keys.sign(label, { ecdsa: true }, digest, 2 * size);
      return o.marshaling === 'jws' ? new Uint8Array(raw) : derSignature(raw);
    }
    if (spec.family === 'rsa') {
      const k = spec.modulusLength! / 8;
      if (o.signatureAlgorithm === 'pkcs1v15') return new Uint8Array(await keys.sign(label, { pkcs1: true }, Buffer.concat([DIGEST_INFO[o.hash], digest]), k));
      return new Uint8Array(await keys.sign(label, { pss: HASHES[o.hash].node }, digest, k));
    }
    throw badRequest(`a ${type} key does not sign`);
  }

  publicKey(label: string): Promise<KeyObject> {
    return this.dev().keys.publicKey(label);
  }

  private dev(): { device: ImportDevice; keys: Pkcs11NamedKeys } {
    const device = this.device();
    if (!device) throw new CofferError('unsupported_algorithm', 'HSM-resident keys need the PKCS#11 seal (this server is sealed with Shamir shares)');
    return { device, keys: namedKeysOn(device.token) };
  }
}

/** Constant-time equality of two MACs. */
export function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** ECDSA r ‖ s (IEEE P1363) → DER SEQUENCE { INTEGER r, INTEGER s }. */
export function derSignature(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  const int = (bytes: Uint8Array): Buffer => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    const v = Buffer.from(bytes.subarray(i));
    return v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v;
  };
  const r = int(raw.subarray(0, half));
  const s = int(raw.subarray(half));
  const body = Buffer.concat([Buffer.from([0x02, r.length]), r, Buffer.from([0x02, s.length]), s]);
  const len = body.length < 0x80 ? Buffer.from([body.length]) : Buffer.from([0x81, body.length]);
  return new Uint8Array(Buffer.concat([Buffer.from([0x30]), len, body]));
}
