/**
 * The pkcs11js native module and what Coffer hands it: the module is loaded
 * lazily (a Shamir-sealed server never loads the native addon), each library
 * is loaded and initialised once per process and reference-counted across the
 * tokens that use it, and the mechanisms and object templates are built here.
 */
import { createRequire } from 'node:module';
import type * as Pkcs11Types from 'pkcs11js';
import { CofferError } from '../errors.js';

export type OaepHash = 'sha1' | 'sha256';

export type Pkcs11Module = typeof Pkcs11Types;
export type Handle = Buffer;

/** What Pkcs11Token.use hands its callback: the library, the constants and a session from the pool. */
export interface TokenContext {
  lib: Pkcs11Types.PKCS11;
  m: Pkcs11Module;
  session: Handle;
  /** Handles of objects with this label and class. */
  find(label: string, cls: number): Handle[];
}

/** The HSM could not be reached or refused: the server stays sealed (503) and writes nothing. */
export class HsmUnavailableError extends CofferError {
  constructor(message: string) {
    super('unavailable', `HSM: ${message}`);
    this.name = 'HsmUnavailableError';
  }
}

let loaded: Pkcs11Module | null = null;
export function pkcs11Module(): Pkcs11Module {
  try {
    loaded ??= createRequire(import.meta.url)('pkcs11js') as Pkcs11Module;
  } catch (err) {
    // Installed without its install script (npm ci --ignore-scripts, or not approved): no native addon.
    throw new HsmUnavailableError(`the pkcs11js native module cannot be loaded (was it built? npm rebuild pkcs11js): ${describe(err)}`);
  }
  return loaded;
}

/** One loaded and initialised library per path, reference-counted across tokens of this process. */
const libraries = new Map<string, { lib: Pkcs11Types.PKCS11; refs: number }>();

export function openLibrary(path: string): Pkcs11Types.PKCS11 {
  const existing = libraries.get(path);
  if (existing) {
    existing.refs += 1;
    return existing.lib;
  }
  const m = pkcs11Module();
  const lib = new m.PKCS11();
  try {
    lib.load(path);
  } catch (err) {
    throw new HsmUnavailableError(`cannot load the PKCS#11 module ${path}: ${describe(err)}`);
  }
  try {
    lib.C_Initialize({ flags: m.CKF_OS_LOCKING_OK });
  } catch (err) {
    // Another copy of this code in the process (a test's module registry) initialised it: usable as is.
    if (codeOf(err) !== m.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      throw new HsmUnavailableError(`C_Initialize failed: ${describe(err)}`);
    }
  }
  libraries.set(path, { lib, refs: 1 });
  return lib;
}

export function closeLibrary(path: string): void {
  const entry = libraries.get(path);
  if (!entry) return;
  entry.refs -= 1;
  if (entry.refs > 0) return;
  libraries.delete(path);
  try {
    entry.lib.C_Finalize();
  } catch {
    /* already finalised */
  }
  try {
    entry.lib.close();
  } catch {
    /* already closed */
  }
}

export function codeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** The PKCS#11 return value name (CKR_…) or the native message; never data. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0]!.slice(0, 200) : String(err).slice(0, 200);
}

export function slotId(handle: Handle): number {
  return handle.length >= 8 ? Number(handle.readBigUInt64LE(0)) : handle.readUInt32LE(0);
}

/** The root key object: AES-256, a token object, sensitive and never extractable, used only to encrypt and decrypt. */
export function rootKeyTemplate(m: Pkcs11Module, label: string): Pkcs11Types.Template {
  return [
    { type: m.CKA_CLASS, value: m.CKO_SECRET_KEY },
    { type: m.CKA_KEY_TYPE, value: m.CKK_AES },
    { type: m.CKA_TOKEN, value: true },
    { type: m.CKA_PRIVATE, value: true },
    { type: m.CKA_SENSITIVE, value: true },
    { type: m.CKA_EXTRACTABLE, value: false },
    { type: m.CKA_ENCRYPT, value: true },
    { type: m.CKA_DECRYPT, value: true },
    { type: m.CKA_WRAP, value: false },
    { type: m.CKA_UNWRAP, value: false },
    { type: m.CKA_LABEL, value: label },
    { type: m.CKA_ID, value: Buffer.from(label, 'utf8') },
  ];
}

export function gcmMechanism(m: Pkcs11Module, iv: Uint8Array, aad: Uint8Array): Pkcs11Types.Mechanism {
  const parameter: Pkcs11Types.AesGCM = { type: m.CK_PARAMS_AES_GCM_v240, iv: Buffer.from(iv), ivBits: 96, aad: Buffer.from(aad), tagBits: 128 };
  return { mechanism: m.CKM_AES_GCM, parameter };
}

export function oaepMechanism(m: Pkcs11Module, hash: OaepHash): Pkcs11Types.Mechanism {
  const parameter: Pkcs11Types.RsaOAEP = {
    type: m.CK_PARAMS_RSA_OAEP,
    hashAlg: hash === 'sha1' ? m.CKM_SHA_1 : m.CKM_SHA256,
    mgf: hash === 'sha1' ? m.CKG_MGF1_SHA1 : m.CKG_MGF1_SHA256,
    // CKZ_DATA_SPECIFIED with no label (the value pkcs11js does not export).
    source: 1,
  };
  return { mechanism: m.CKM_RSA_PKCS_OAEP, parameter };
}

/**
 * A BYOK import's RSA-3072 key pair: token objects (an import may come hours later, after a
 * restart), the private key sensitive and not extractable, usable only to decrypt/unwrap.
 */
export function importKeyPairTemplates(m: Pkcs11Module, label: string): { publicKey: Pkcs11Types.Template; privateKey: Pkcs11Types.Template } {
  return {
    publicKey: [
      { type: m.CKA_TOKEN, value: true },
      { type: m.CKA_LABEL, value: label },
      { type: m.CKA_MODULUS_BITS, value: 3072 },
      { type: m.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      { type: m.CKA_ENCRYPT, value: true },
      { type: m.CKA_WRAP, value: true },
    ],
    privateKey: [
      { type: m.CKA_TOKEN, value: true },
      { type: m.CKA_PRIVATE, value: true },
      { type: m.CKA_LABEL, value: label },
      { type: m.CKA_SENSITIVE, value: true },
      { type: m.CKA_EXTRACTABLE, value: false },
      { type: m.CKA_DECRYPT, value: true },
      { type: m.CKA_UNWRAP, value: true },
    ],
  };
}

/** An imported namespace KEK: a session object whose value can be read (namespace KEKs live in host memory). */
export function sessionKeyTemplate(m: Pkcs11Module): Pkcs11Types.Template {
  return [
    { type: m.CKA_CLASS, value: m.CKO_SECRET_KEY },
    { type: m.CKA_KEY_TYPE, value: m.CKK_AES },
    { type: m.CKA_TOKEN, value: false },
    { type: m.CKA_SENSITIVE, value: false },
    { type: m.CKA_EXTRACTABLE, value: true },
  ];
}

/** The ephemeral AES key of a two-step import: a session object that only unwraps, never readable. */
export function ephemeralKeyTemplate(m: Pkcs11Module): Pkcs11Types.Template {
  return [
    { type: m.CKA_CLASS, value: m.CKO_SECRET_KEY },
    { type: m.CKA_KEY_TYPE, value: m.CKK_AES },
    { type: m.CKA_TOKEN, value: false },
    { type: m.CKA_SENSITIVE, value: true },
    { type: m.CKA_EXTRACTABLE, value: false },
    { type: m.CKA_UNWRAP, value: true },
  ];
}
