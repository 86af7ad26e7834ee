/**
 * HSM-resident named keys in a PKCS#11 token (kms/named-keys/hsm.ts decides
 * what to do; this file says how, in PKCS#11 terms). Every object is a token
 * object, private, sensitive and never extractable: its secret never leaves the
 * token. Public halves of key pairs are token objects too, readable, so the
 * public key can be served and signatures checked in node.
 *
 * Mechanisms, as SoftHSM2 2.6 supports them (checked empirically, see README):
 *   AES-256-GCM       CKM_AES_GCM (96-bit IV, 128-bit tag)
 *   HMAC              CKK_GENERIC_SECRET keys, CKM_SHA256_HMAC / CKM_SHA512_HMAC
 *   ECDSA P-256/P-384 CKM_ECDSA over a digest computed in node (CKM_ECDSA_SHA256 is not supported)
 *   RSA signatures    CKM_RSA_PKCS over DigestInfo ‖ digest, CKM_RSA_PKCS_PSS over the digest
 *   RSA decryption    CKM_RSA_X_509 (raw); OAEP-SHA-256 is decoded in node (SoftHSM2 does OAEP with SHA-1 only)
 * Object handles are looked up once per label and kept (C_FindObjects is a synchronous call).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type * as Pkcs11Types from 'pkcs11js';
import { CofferError, IntegrityError } from '../errors.js';
import { codeOf, type Handle } from './pkcs11-native.js';
import type { Pkcs11Token, TokenContext } from './pkcs11.js';

export type HsmKeySpec =
  | { kind: 'aes'; bytes: 32 }
  | { kind: 'hmac'; bytes: number }
  | { kind: 'ec'; curve: 'P-256' | 'P-384' }
  | { kind: 'rsa'; bits: number };

export type HsmHash = 'sha256' | 'sha384' | 'sha512';

/** DER of the curves' OIDs (CKA_EC_PARAMS). */
const EC_PARAMS: Record<'P-256' | 'P-384', Buffer> = {
  'P-256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'P-384': Buffer.from('06052b81040022', 'hex'),
};

/** The attributes every secret part shares: in the token for good, its value never readable. */
function secretAttributes(m: TokenContext['m'], label: string): Pkcs11Types.Template {
  return [
    { type: m.CKA_TOKEN, value: true },
    { type: m.CKA_PRIVATE, value: true },
    { type: m.CKA_SENSITIVE, value: true },
    { type: m.CKA_EXTRACTABLE, value: false },
    { type: m.CKA_LABEL, value: label },
    { type: m.CKA_ID, value: Buffer.from(label, 'utf8') },
  ];
}

export class Pkcs11NamedKeys {
  private readonly handles = new Map<string, Handle>();
  private readonly publicKeys = new Map<string, KeyObject>();

  constructor(private readonly token: Pkcs11Token) {}

  /** Generates a key (or key pair) labelled `label` in the token. */
  async generate(spec: HsmKeySpec, label: string): Promise<void> {
    await this.token.use(async ({ lib, m, session }) => {
      const secret = secretAttributes(m, label);
      if (spec.kind === 'aes' || spec.kind === 'hmac') {
        const aes = spec.kind === 'aes';
        await lib.C_GenerateKeyAsync(session, { mechanism: aes ? m.CKM_AES_KEY_GEN : m.CKM_GENERIC_SECRET_KEY_GEN }, [
          ...secret,
          { type: m.CKA_CLASS, value: m.CKO_SECRET_KEY },
          { type: m.CKA_KEY_TYPE, value: aes ? m.CKK_AES : m.CKK_GENERIC_SECRET },
          { type: m.CKA_VALUE_LEN, value: spec.bytes },
          { type: m.CKA_ENCRYPT, value: aes },
          { type: m.CKA_DECRYPT, value: aes },
          { type: m.CKA_SIGN, value: !aes },
          { type: m.CKA_VERIFY, value: !aes },
          { type: m.CKA_WRAP, value: false },
          { type: m.CKA_UNWRAP, value: false },
        ]);
        return;
      }
      const publicTemplate: Pkcs11Types.Template = [
        { type: m.CKA_TOKEN, value: true },
        { type: m.CKA_LABEL, value: label },
        { type: m.CKA_ID, value: Buffer.from(label, 'utf8') },
        { type: m.CKA_VERIFY, value: true },
      ];
      const privateTemplate: Pkcs11Types.Template = [...secret, { type: m.CKA_SIGN, value: true }];
      if (spec.kind === 'ec') {
        publicTemplate.push({ type: m.CKA_EC_PARAMS, value: EC_PARAMS[spec.curve] });
        await lib.C_GenerateKeyPairAsync(session, { mechanism: m.CKM_EC_KEY_PAIR_GEN }, publicTemplate, privateTemplate);
      } else {
        publicTemplate.push({ type: m.CKA_MODULUS_BITS, value: spec.bits }, { type: m.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
        privateTemplate.push({ type: m.CKA_DECRYPT, value: true });
        await lib.C_GenerateKeyPairAsync(session, { mechanism: m.CKM_RSA_PKCS_KEY_PAIR_GEN }, publicTemplate, privateTemplate);
      }
    });
  }

  /** Gives every object labelled `from` the label (and CKA_ID) `to`; returns how many. */
  async relabel(from: string, to: string): Promise<number> {
    return this.token.use(({ lib, m, session, find }) => {
      let n = 0;
      for (const cls of [m.CKO_SECRET_KEY, m.CKO_PRIVATE_KEY, m.CKO_PUBLIC_KEY]) {
        for (const h of find(from, cls)) {
          lib.C_SetAttributeValue(session, h, [
            { type: m.CKA_LABEL, value: to },
            { type: m.CKA_ID, value: Buffer.from(to, 'utf8') },
          ]);
          n += 1;
        }
      }
      return n;
    });
  }

  /** Destroys every object whose label is one of `labels` or starts with `prefix`; returns how many. */
  async destroy(which: { labels?: readonly string[]; prefix?: string }): Promise<number> {
    const labels = new Set(which.labels ?? []);
    for (const l of labels) this.forget(l);
    if (which.prefix !== undefined) for (const l of [...this.handles.keys(), ...this.publicKeys.keys()]) if (l.startsWith(which.prefix)) this.forget(l);
    return this.token.use(({ lib, m, session, find }) => {
      let n = 0;
      for (const cls of [m.CKO_SECRET_KEY, m.CKO_PRIVATE_KEY, m.CKO_PUBLIC_KEY]) {
        const handles: Handle[] = [];
        for (const label of labels) handles.push(...find(label, cls));
        if (which.prefix !== undefined) {
          lib.C_FindObjectsInit(session, [{ type: m.CKA_CLASS, value: cls }]);
          let all: Handle[];
          try {
            all = lib.C_FindObjects(session, 100_000);
          } finally {
            lib.C_FindObjectsFinal(session);
          }
          for (const h of all) {
            const label = lib.C_GetAttributeValue(session, h, [{ type: m.CKA_LABEL }])[0]?.value.toString('utf8') ?? '';
            if (label.startsWith(which.prefix) && !labels.has(label)) handles.push(h);
          }
        }
        for (const h of handles) {
          lib.C_DestroyObject(session, h);
          n += 1;
        }
      }
      return n;
    });
  }

  /** Labels of the objects (any class) whose label starts with `prefix` (tests, diagnostics). */
  async labels(prefix: string): Promise<string[]> {
    return this.token.use(({ lib, m, session }) => {
      lib.C_FindObjectsInit(session, []);
      let all: Handle[];
      try {
        all = lib.C_FindObjects(session, 100_000);
      } finally {
        lib.C_FindObjectsFinal(session);
      }
      const out: string[] = [];
      for (const h of all) {
        const label = lib.C_GetAttributeValue(session, h, [{ type: m.CKA_LABEL }])[0]?.value.toString('utf8') ?? '';
        if (label.startsWith(prefix)) out.push(label);
      }
      return out;
    });
  }

  /**
   * Tries to read the secret value of the object labelled `label` (tests prove it is refused):
   * 'sensitive' when the token answers CKR_ATTRIBUTE_SENSITIVE.
   */
  async tryReadSecret(label: string): Promise<'sensitive' | 'readable' | 'absent' | 'refused'> {
    return this.token.use(({ lib, m, session, find }) => {
      const secret = find(label, m.CKO_SECRET_KEY)[0];
      const priv = find(label, m.CKO_PRIVATE_KEY)[0];
      const h = secret ?? priv;
      if (!h) return 'absent';
      try {
        // A secret key's or EC private key's value is CKA_VALUE; an RSA private key's secret, its private exponent.
        const rsa = !secret && lib.C_GetAttributeValue(session, h, [{ type: m.CKA_KEY_TYPE }])[0]?.value.readUInt32LE(0) === m.CKK_RSA;
        lib.C_GetAttributeValue(session, h, [{ type: rsa ? m.CKA_PRIVATE_EXPONENT : m.CKA_VALUE }]);
        return 'readable';
      } catch (err) {
        return codeOf(err) === m.CKR_ATTRIBUTE_SENSITIVE ? 'sensitive' : 'refused';
      }
    });
  }

  /** AES-256-GCM in the token: ciphertext ‖ tag. */
  async encryptGcm(label: string, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Buffer> {
    return this.token.encryptGcm(await this.secretHandle(label), iv, aad, plaintext);
  }

  /** AES-256-GCM decryption in the token; null when the tag does not match (altered data or AAD). */
  async decryptGcm(label: string, iv: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Promise<Buffer | null> {
    try {
      return await this.token.decryptGcm(await this.secretHandle(label), iv, aad, sealed, 'a KMS ciphertext');
    } catch (err) {
      if (err instanceof IntegrityError) return null;
      throw err;
    }
  }

  /** HMAC of `data` with the generic secret labelled `label`. */
  async hmac(label: string, hash: 'sha256' | 'sha512', data: Uint8Array): Promise<Buffer> {
    const key = await this.secretHandle(label);
    return this.token.use(({ lib, m, session }) => {
      lib.C_SignInit(session, { mechanism: hash === 'sha256' ? m.CKM_SHA256_HMAC : m.CKM_SHA512_HMAC }, key);
      return lib.C_SignAsync(session, Buffer.from(data), Buffer.alloc(hash === 'sha256' ? 32 : 64));
    });
  }

  /**
   * A signature with the private key labelled `label` over a digest computed by the caller:
   * ECDSA (raw r ‖ s), RSA PKCS#1 v1.5 (`data` is DigestInfo ‖ digest) or RSA-PSS (salt = digest length).
   */
  async sign(label: string, how: { ecdsa: true } | { pkcs1: true } | { pss: HsmHash }, data: Uint8Array, outBytes: number): Promise<Buffer> {
    const key = await this.privateHandle(label);
    return this.token.use(({ lib, m, session }) => {
      let mechanism: Pkcs11Types.Mechanism;
      if ('ecdsa' in how) mechanism = { mechanism: m.CKM_ECDSA };
      else if ('pkcs1' in how) mechanism = { mechanism: m.CKM_RSA_PKCS };
      else {
        const [hashAlg, mgf, saltLen] =
          how.pss === 'sha256' ? [m.CKM_SHA256, m.CKG_MGF1_SHA256, 32] : how.pss === 'sha384' ? [m.CKM_SHA384, m.CKG_MGF1_SHA384, 48] : [m.CKM_SHA512, m.CKG_MGF1_SHA512, 64];
        const parameter: Pkcs11Types.RsaPSS = { type: m.CK_PARAMS_RSA_PSS, hashAlg, mgf, saltLen };
        mechanism = { mechanism: m.CKM_RSA_PKCS_PSS, parameter };
      }
      lib.C_SignInit(session, mechanism, key);
      return lib.C_SignAsync(session, Buffer.from(data), Buffer.alloc(outBytes));
    });
  }

  /** Raw RSA with the private key labelled `label` (m = c^d mod n); null when the block is not below the modulus. */
  async rawRsaDecrypt(label: string, block: Uint8Array): Promise<Buffer | null> {
    const key = await this.privateHandle(label);
    return this.token.use(async ({ lib, m, session }) => {
      lib.C_DecryptInit(session, { mechanism: m.CKM_RSA_X_509 }, key);
      try {
        return await lib.C_DecryptAsync(session, Buffer.from(block), Buffer.alloc(block.length));
      } catch (err) {
        const code = codeOf(err);
        if (code === m.CKR_ENCRYPTED_DATA_INVALID || code === m.CKR_ENCRYPTED_DATA_LEN_RANGE || code === m.CKR_DATA_INVALID) return null;
        throw err;
      }
    });
  }

  /** The public key of the pair labelled `label`, read from its public object. */
  async publicKey(label: string): Promise<KeyObject> {
    const cached = this.publicKeys.get(label);
    if (cached) return cached;
    const key = await this.token.use(({ lib, m, session, find }) => {
      const h = find(label, m.CKO_PUBLIC_KEY)[0];
      if (!h) throw missing(label);
      const [type] = lib.C_GetAttributeValue(session, h, [{ type: m.CKA_KEY_TYPE }]);
      if (type?.value.readUInt32LE(0) === m.CKK_EC) {
        const [params, point] = lib.C_GetAttributeValue(session, h, [{ type: m.CKA_EC_PARAMS }, { type: m.CKA_EC_POINT }]);
        const crv = params!.value.equals(EC_PARAMS['P-384']) ? 'P-384' : 'P-256';
        const size = crv === 'P-384' ? 48 : 32;
        // CKA_EC_POINT is the DER OCTET STRING around 04 ‖ x ‖ y (some tokens give the bare point).
        const raw = point!.value.length === 1 + 2 * size ? point!.value : point!.value.subarray(point!.value.length - (1 + 2 * size));
        return createPublicKey({
          key: { kty: 'EC', crv, x: raw.subarray(1, 1 + size).toString('base64url'), y: raw.subarray(1 + size).toString('base64url') },
          format: 'jwk',
        });
      }
      const [n, e] = lib.C_GetAttributeValue(session, h, [{ type: m.CKA_MODULUS }, { type: m.CKA_PUBLIC_EXPONENT }]);
      return createPublicKey({ key: { kty: 'RSA', n: n!.value.toString('base64url'), e: e!.value.toString('base64url') }, format: 'jwk' });
    });
    this.publicKeys.set(label, key);
    return key;
  }

  private async secretHandle(label: string): Promise<Handle> {
    return this.handle(label, 'secret');
  }

  private async privateHandle(label: string): Promise<Handle> {
    return this.handle(label, 'private');
  }

  private async handle(label: string, kind: 'secret' | 'private'): Promise<Handle> {
    const cached = this.handles.get(label);
    if (cached) return cached;
    const h = await this.token.use(({ m, find }) => find(label, kind === 'secret' ? m.CKO_SECRET_KEY : m.CKO_PRIVATE_KEY)[0]);
    if (!h) throw missing(label);
    this.handles.set(label, h);
    return h;
  }

  private forget(label: string): void {
    this.handles.delete(label);
    this.publicKeys.delete(label);
  }
}

function missing(label: string): CofferError {
  return new CofferError('unavailable', `HSM: the key object "${label}" is not on the token (another token, or it was destroyed)`);
}

/** One Pkcs11NamedKeys per token connection (its handle cache belongs to that connection). */
const perToken = new WeakMap<Pkcs11Token, Pkcs11NamedKeys>();
export function namedKeysOn(token: Pkcs11Token): Pkcs11NamedKeys {
  let keys = perToken.get(token);
  if (!keys) {
    keys = new Pkcs11NamedKeys(token);
    perToken.set(token, keys);
  }
  return keys;
}
