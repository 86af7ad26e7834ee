/**
 * BYOK: customers bring their own 256-bit key material, wrapped under an
 * RSA-3072 public key Coffer hands out (like AWS KMS GetParametersForImport /
 * ImportKeyMaterial). Each wrapping key serves one import and expires after
 * 24 hours; its private key is generated in the HSM under the PKCS#11 seal, in
 * software (wrapped by the root key) under the Shamir seal.
 *
 * Wrapping algorithms (AWS names):
 *   RSAES_OAEP_SHA_256 / _SHA_1       the 32-byte key under RSA-OAEP (MGF1 with the same hash)
 *   RSA_AES_KEY_WRAP_SHA_256 / _SHA_1 a fresh AES-256 key under RSA-OAEP, followed by the target
 *                                     key under AES key wrap with padding (RFC 5649)
 * Which of them work depends on the seal and target; see `supportedAlgorithms`.
 */
import { createDecipheriv, createHash, createPrivateKey, generateKeyPair, privateDecrypt, randomUUID, constants, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { Transaction } from 'kysely';
import { IMPORT_ALGORITHMS, type ImportAlgorithm, type ImportParams, type RotateRootResult } from '@coffer/sdk/api';
import { CofferError, badRequest, notFound } from '../errors.js';
import { zeroize, type KeyMaterial } from '../crypto/aead.js';
import type { Keyring } from '../keyring/keyring.js';
import type { OaepHash, Pkcs11Token } from '../seal/pkcs11.js';
import type { ImportDevice } from '../seal/seal.js';
import { sealAad } from '../seal/seal-context.js';
import type { NamespaceService } from '../secrets/namespace-service.js';
import type { Transactor } from '../storage/executor.js';
import type { ImportKeysRepo } from '../storage/repos/import-keys.js';
import type { Database } from '../storage/schema.js';

export { IMPORT_ALGORITHMS, type ImportAlgorithm };

/** Like AWS import parameters: a wrapping key is good for 24 hours. */
export const IMPORT_PARAMS_TTL_MS = 24 * 3600 * 1000;
const RSA_BYTES = 384;
/** Unused, unexpired import parameters allowed at once (server-wide). */
const MAX_OPEN_IMPORTS = 100;
/** RFC 5649 alternative initial value, as `openssl enc -id-aes256-wrap-pad -iv A65959A6` uses. */
const KWP_IV = Buffer.from('A65959A6', 'hex');

const generateKeyPairAsync = promisify(generateKeyPair);

function parts(algorithm: ImportAlgorithm): { hash: OaepHash; twoStep: boolean } {
  return { hash: algorithm.endsWith('SHA_256') ? 'sha256' : 'sha1', twoStep: algorithm.startsWith('RSA_AES') };
}

export type ImportTarget = { kind: 'namespace'; namespace: string } | { kind: 'root' };

/** What BYOK needs from the rest of the server (wired in app/compose.ts). */
export interface ByokDeps {
  db: Transactor;
  importKeys: Pick<ImportKeysRepo, 'countOpen' | 'insert' | 'find' | 'spend' | 'listExpired' | 'retire'>;
  namespaces: Pick<NamespaceService, 'resolve' | 'rotateKek' | 'onKekRotated'>;
  keyring: Pick<Keyring, 'rootKey'>;
  /** The seal in effect: whether it takes key imports, and its device (null: software wrapping keys). */
  imports: {
    inSeal(): boolean;
    device(): ImportDevice | null;
  };
  /** Puts an imported root key in effect (the vault's root import, vault/rotate-root.ts). */
  importRoot(
    unwrapInto: (token: Pkcs11Token, label: string) => Promise<Buffer>,
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<RotateRootResult>;
}

export class ByokService {
  private readonly db: Transactor;
  private readonly importKeys: ByokDeps['importKeys'];

  constructor(private readonly deps: ByokDeps) {
    this.db = deps.db;
    this.importKeys = deps.importKeys;
  }

  /**
   * What this server can import, by seal and target:
   *  - Shamir seal: all four (node:crypto does the RSA and AES-KWP steps).
   *  - PKCS#11 seal, namespace KEK: all four. OAEP with SHA-1 and the AES-KWP step run inside the
   *    HSM (C_UnwrapKey); with SHA-256, which SoftHSM2 2.6 cannot do, the HSM does the raw RSA
   *    operation (CKM_RSA_X_509, the private key never leaves it) and Coffer removes the OAEP
   *    padding. Either way the KEK ends up in Coffer's memory, as every KEK does in use.
   *  - PKCS#11 seal, root key: only what the HSM unwraps natively (the root key must never be in
   *    Coffer's memory): RSAES_OAEP_SHA_1 and RSA_AES_KEY_WRAP_SHA_1 on SoftHSM2 2.6, the SHA-256
   *    variants too on an HSM that supports them (probed when the parameters are requested).
   */
  static supportedAlgorithms(keyImportInSeal: boolean, target: ImportTarget['kind']): ImportAlgorithm[] {
    if (keyImportInSeal && target === 'root') return ['RSAES_OAEP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'];
    return [...IMPORT_ALGORITHMS];
  }

  async importParams(target: ImportTarget, algorithm: ImportAlgorithm, identity: string): Promise<ImportParams> {
    let namespaceId: string | null = null;
    if (target.kind === 'namespace') namespaceId = (await this.deps.namespaces.resolve(target.namespace)).id;
    else if (!this.deps.imports.inSeal()) throw badRequest('importing the root key needs the PKCS#11 seal (with Shamir, POST /v1/sys/rotate-root makes a new one)');
    // Expired parameters go now (their HSM key pairs too); and there is a bound on open ones, since
    // each holds an RSA key (in the HSM, a token object).
    await this.purgeExpired();
    if ((await this.importKeys.countOpen()) >= MAX_OPEN_IMPORTS) {
      throw new CofferError('rate_limited', `${MAX_OPEN_IMPORTS} import parameters are open: use or let some expire first`);
    }
    const id = randomUUID();
    const expiresAt = new Date(Date.now() + IMPORT_PARAMS_TTL_MS);
    const device = this.deps.imports.device();
    const token = device?.token ?? null;
    let publicKey: KeyObject;
    let hsmLabel: string | null = null;
    let wrappedPrivate: Uint8Array | null = null;
    let rootVersion: number | null = null;
    if (device && token) {
      hsmLabel = device.keyLabel(id);
      publicKey = (await token.generateImportKeyPair(hsmLabel)).publicKey;
      const { hash } = parts(algorithm);
      if (target.kind === 'root' && !(await token.supportsOaep(hsmLabel, hash))) {
        await token.destroyByLabel(hsmLabel);
        throw new CofferError('unsupported_algorithm',
          `this HSM cannot do RSA-OAEP with ${hash.toUpperCase()} inside the token, and a root key must never leave it: use RSAES_OAEP_SHA_1 or RSA_AES_KEY_WRAP_SHA_1`,
        );
      }
    } else {
      // Off the event loop: RSA-3072 generation takes a good fraction of a second.
      const pair = await generateKeyPairAsync('rsa', { modulusLength: 3072, publicExponent: 0x10001 });
      publicKey = pair.publicKey;
      const der = new Uint8Array(pair.privateKey.export({ format: 'der', type: 'pkcs8' }));
      try {
        const root = this.deps.keyring.rootKey;
        rootVersion = root.version;
        wrappedPrivate = await root.wrapKey(der, sealAad.importKey(id, root.version));
      } finally {
        zeroize(der);
      }
    }
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
    try {
      await this.importKeys.insert({
        id,
        target: target.kind,
        namespace_id: namespaceId,
        algorithm,
        public_key: pem,
        hsm_label: hsmLabel,
        wrapped_private_key: wrappedPrivate,
        root_version: rootVersion,
        created_by: identity,
        expires_at: expiresAt,
      });
    } catch (err) {
      if (token && hsmLabel) await token.destroyByLabel(hsmLabel).catch(() => undefined);
      throw err;
    }
    return {
      import_token: id,
      algorithm,
      wrapping_key_spec: 'RSA_3072',
      public_key: pem,
      expires_at: expiresAt.toISOString(),
      wrapping_key_origin: token ? 'hsm' : 'software',
    };
  }

  /**
   * Takes the import token for one attempt. It is spent whatever the outcome:
   * a wrapping key that answered "bad padding" once must not answer again
   * (no decryption oracle), so a failed import needs new parameters.
   */
  private async spend(target: ImportTarget, importToken: string) {
    if (!/^[0-9a-f-]{36}$/i.test(importToken)) throw badRequest('import_token is the token returned with the import parameters');
    const row = await this.importKeys.find(importToken);
    if (!row) throw notFound('no such import token');
    if (row.target !== target.kind) throw badRequest(`this import token is for a ${row.target} import`);
    if (target.kind === 'namespace') {
      const ns = await this.deps.namespaces.resolve(target.namespace);
      if (row.namespace_id !== ns.id) throw badRequest('this import token belongs to another namespace');
    }
    const spent = await this.importKeys.spend(row.id, new Date());
    const expired = row.expires_at.getTime() <= Date.now();
    if (!spent) throw new CofferError('gone', 'this import token was already used: get new import parameters');
    if (expired) {
      await this.dropHsmKey(row.hsm_label);
      throw new CofferError('expired', 'these import parameters expired (they last 24 hours): get new ones');
    }
    return row;
  }

  private async dropHsmKey(label: string | null): Promise<void> {
    if (!label) return;
    await this.deps.imports.device()?.token.destroyByLabel(label).catch(() => undefined);
  }

  /** Imports material as the namespace's new KEK version (origin external); returns the rotation. */
  async importNamespaceKey(namespace: string, importToken: string, wrappedB64: string, beforeCommit?: (trx: Transaction<Database>) => Promise<void>) {
    const wrapped = decodeB64(wrappedB64);
    const row = await this.spend({ kind: 'namespace', namespace }, importToken);
    let material: KeyMaterial | null = null;
    try {
      material = await this.unwrapForNamespace(row, wrapped);
      const namespaces = this.deps.namespaces;
      const kek = material;
      const result = await this.db.transaction().execute(async (trx) => {
        const rotation = await namespaces.rotateKek(namespace, { material: kek, origin: 'external' }, trx);
        await beforeCommit?.(trx);
        return rotation;
      });
      // Given a transaction, rotateKek leaves starting the rewrap job to its caller.
      namespaces.onKekRotated(row.namespace_id!);
      return result;
    } finally {
      zeroize(material);
      await this.dropHsmKey(row.hsm_label);
    }
  }

  /**
   * Spends a namespace import token and unwraps material for a named key
   * (kms/named-keys/transfer.ts): any length, which `check` validates (and may
   * replace; it zeroes what it refuses). The caller zeroes the result.
   * Under the PKCS#11 seal only the SHA-256 algorithms: the SHA-1 ones unwrap
   * into an HSM AES key object, which holds neither 512-bit HMAC keys nor
   * PKCS#8 private keys.
   */
  async unwrapForNamedKey(namespace: string, importToken: string, wrappedB64: string, check: (material: Uint8Array) => KeyMaterial): Promise<KeyMaterial> {
    const wrapped = decodeB64(wrappedB64, MAX_NAMED_KEY_B64);
    const row = await this.spend({ kind: 'namespace', namespace }, importToken);
    try {
      if (row.hsm_label && parts(row.algorithm as ImportAlgorithm).hash === 'sha1') {
        throw new CofferError('unsupported_algorithm', 'under the PKCS#11 seal, named keys import with RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256: get new import parameters');
      }
      return await this.unwrapForNamespace(row, wrapped, check);
    } finally {
      await this.dropHsmKey(row.hsm_label);
    }
  }

  private async unwrapForNamespace(
    row: { id: string; algorithm: string; hsm_label: string | null; wrapped_private_key: Uint8Array | null; root_version: number | null },
    wrapped: Uint8Array,
    checkLength: (key: Uint8Array) => KeyMaterial = check256,
  ): Promise<KeyMaterial> {
    const { hash, twoStep } = parts(row.algorithm as ImportAlgorithm);
    const token = this.deps.imports.device()?.token ?? null;
    if (row.hsm_label) {
      if (!token) throw new CofferError('conflict', 'this import key is in an HSM the server no longer uses: get new import parameters');
      if (hash === 'sha1') {
        const handle = await token.unwrapImported(row.hsm_label, hash, twoStep, wrapped, { asRoot: false });
        return checkLength(await token.takeKeyValue(handle));
      }
      // SHA-256 where the token cannot: raw RSA in the token, OAEP decoding here.
      const block = await token.rawRsaDecrypt(row.hsm_label, wrapped.subarray(0, RSA_BYTES));
      const first = oaepDecodeSha256(block);
      block.fill(0);
      return twoStep ? kwpUnwrap(first, wrapped.subarray(RSA_BYTES), checkLength) : checkLength(first);
    }
    if (!row.wrapped_private_key || row.root_version === null) throw new CofferError('gone', 'this import key is gone: get new import parameters');
    const der = await this.deps.keyring.rootKey.unwrapKey(row.wrapped_private_key, sealAad.importKey(row.id, row.root_version), 'an import wrapping key');
    try {
      const key = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
      if (twoStep && wrapped.length < RSA_BYTES + 40) throw invalidMaterial();
      if (!twoStep && wrapped.length !== RSA_BYTES) throw invalidMaterial();
      let first: Uint8Array;
      try {
        first = new Uint8Array(privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, wrapped.subarray(0, RSA_BYTES)));
      } catch {
        throw invalidMaterial();
      }
      return twoStep ? kwpUnwrap(first, wrapped.subarray(RSA_BYTES), checkLength) : checkLength(first);
    } finally {
      zeroize(der);
    }
  }

  /** Imports material as the next root key version, inside the HSM (PKCS#11 seal only). */
  async importRootKey(importToken: string, wrappedB64: string, beforeCommit?: (trx: Transaction<Database>) => Promise<void>): Promise<RotateRootResult> {
    const wrapped = decodeB64(wrappedB64);
    const row = await this.spend({ kind: 'root' }, importToken);
    try {
      const { hash, twoStep } = parts(row.algorithm as ImportAlgorithm);
      return await this.deps.importRoot(async (token: Pkcs11Token, label: string) => {
        if (!row.hsm_label) throw new CofferError('conflict', 'this import key is not in the HSM: get new import parameters');
        const handle = await token.unwrapImported(row.hsm_label, hash, twoStep, wrapped, { asRoot: true, label });
        // The key must be 256 bits. SoftHSM2 reports CKA_VALUE_LEN 0 for unwrapped keys, so there the
        // length is proven by the AES-KWP block instead (40 bytes: a 25-32 byte key; AES takes only 32 of
        // those), and a bare RSAES_OAEP import, whose length nothing proves, is refused.
        const described = await token.describeKey(label);
        const kwpLength = wrapped.length - RSA_BYTES;
        const ok = described?.valueLen === 32 || (described?.valueLen === 0 && twoStep && kwpLength === 40);
        if (!ok) {
          await token.destroyObject(handle).catch(() => undefined);
          if (described?.valueLen === 0 && !twoStep) {
            throw new CofferError('unsupported_algorithm', 'this HSM does not report the length of an unwrapped key: import the root key with RSA_AES_KEY_WRAP_SHA_1');
          }
          throw new CofferError('invalid_key_material', 'the imported root key must be 256 bits');
        }
        return handle;
      }, beforeCommit);
    } finally {
      await this.dropHsmKey(row.hsm_label);
    }
  }

  /** Removes expired, unused import keys (HSM objects included). */
  async purgeExpired(): Promise<number> {
    const rows = await this.importKeys.listExpired(new Date());
    for (const row of rows) {
      await this.importKeys.retire(row.id, new Date());
      await this.dropHsmKey(row.hsm_label);
    }
    return rows.length;
  }
}

function invalidMaterial(): CofferError {
  return new CofferError('invalid_key_material', 'the wrapped key material does not unwrap with this import key and algorithm');
}

/** A wrapped RSA-4096 PKCS#8 key (about 2,800 bytes) fits with room to spare. */
export const MAX_NAMED_KEY_B64 = 8192;

function decodeB64(text: string, max = 4096): Uint8Array {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length > max) throw badRequest('encrypted_key_material is base64');
  return new Uint8Array(Buffer.from(text, 'base64'));
}

function check256(key: Uint8Array): KeyMaterial {
  if (key.length !== 32) {
    zeroize(key);
    throw new CofferError('invalid_key_material', 'imported key material must be 256 bits (32 bytes)');
  }
  return key;
}

/** Second step of RSA_AES_KEY_WRAP: the target key under the ephemeral AES key with RFC 5649. */
function kwpUnwrap(ephemeral: Uint8Array, wrapped: Uint8Array, checkLength: (key: Uint8Array) => KeyMaterial = check256): KeyMaterial {
  try {
    if (ephemeral.length !== 32) throw invalidMaterial();
    const decipher = createDecipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
    const out = Buffer.concat([decipher.update(wrapped), decipher.final()]);
    const key = new Uint8Array(out);
    out.fill(0);
    return checkLength(key);
  } catch (err) {
    if (err instanceof CofferError) throw err;
    throw invalidMaterial();
  } finally {
    zeroize(ephemeral);
  }
}

function mgf1Sha256(seed: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let counter = 0, offset = 0; offset < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash('sha256').update(seed).update(c).digest();
    block.copy(out, offset);
    offset += block.length;
  }
  return out;
}

/**
 * EME-OAEP decoding with SHA-256 and MGF1-SHA-256, empty label unless given
 * (RFC 8017 7.1.2 step 3; HSM-resident RSA named keys pass their binding). Every check runs before the single failure, which says
 * nothing about which check failed; the import token is spent anyway.
 */
export function oaepDecodeSha256(em: Uint8Array, label: Uint8Array = new Uint8Array(0)): Uint8Array {
  const hLen = 32;
  const k = em.length;
  if (k < 2 * hLen + 2) throw invalidMaterial();
  const maskedSeed = em.subarray(1, 1 + hLen);
  const maskedDb = em.subarray(1 + hLen);
  const seed = mgf1Sha256(maskedDb, hLen);
  for (let i = 0; i < hLen; i++) seed[i]! ^= maskedSeed[i]!;
  const db = mgf1Sha256(seed, k - hLen - 1);
  for (let i = 0; i < db.length; i++) db[i]! ^= maskedDb[i]!;
  const lHash = createHash('sha256').update(label).digest();
  let bad = em[0]!;
  for (let i = 0; i < hLen; i++) bad |= db[i]! ^ lHash[i]!;
  // Find the 0x01 separator after the zero padding without branching on secret data.
  let index = 0;
  let looking = 1;
  for (let i = hLen; i < db.length; i++) {
    const isOne = Number(db[i] === 1);
    const isZero = Number(db[i] === 0);
    index |= looking & isOne ? i : 0;
    bad |= looking & Number(!isOne && !isZero);
    looking &= Number(!isOne);
  }
  bad |= looking;
  seed.fill(0);
  if (bad !== 0) {
    db.fill(0);
    throw invalidMaterial();
  }
  const message = new Uint8Array(db.subarray(index + 1));
  db.fill(0);
  return message;
}
