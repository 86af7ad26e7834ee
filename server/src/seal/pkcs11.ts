/**
 * A PKCS#11 token (an HSM, or SoftHSM2 in tests) holding Coffer's root key.
 *
 * Everything here talks to the token through pkcs11js. The module is loaded
 * lazily (a Shamir-sealed server never loads the native addon), initialised
 * with CKF_OS_LOCKING_OK (without it, concurrent sessions crash SoftHSM2), and
 * shared by every Pkcs11Token of the process on the same library path, since
 * a library can be initialised only once per process (pkcs11-native.ts, with
 * the mechanisms and object templates).
 *
 * Cryptographic calls use the asynchronous pkcs11js variants: they run on the
 * libuv thread pool, so a slow HSM delays the request that needs it, not the
 * event loop. A session carries one operation at a time, so operations borrow
 * a session from a small pool. C_*Init, C_Login and C_FindObjects have no
 * async variant; they are short and happen only at unseal and key operations.
 */
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import type * as Pkcs11Types from 'pkcs11js';
import { CofferError, IntegrityError } from '../errors.js';
import {
  HsmUnavailableError,
  closeLibrary,
  codeOf,
  describe,
  ephemeralKeyTemplate,
  gcmMechanism,
  importKeyPairTemplates,
  oaepMechanism,
  openLibrary,
  pkcs11Module,
  rootKeyTemplate,
  sessionKeyTemplate,
  slotId,
  type Handle,
  type OaepHash,
  type Pkcs11Module,
  type TokenContext,
} from './pkcs11-native.js';

export { HsmUnavailableError, type OaepHash, type TokenContext };

export interface Pkcs11Settings {
  /** Path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  module: string;
  /** Token label (preferred: SoftHSM2 puts a token in a random slot) or the slot id. */
  tokenLabel?: string | undefined;
  slot?: number | undefined;
  /** User PIN. Never logged, never part of an error message. */
  pin: string;
  /** Sessions kept open for concurrent operations (more than ~2 does not help on 2 cores). */
  sessions: number;
}

export interface RsaKeyPairRef {
  publicKey: KeyObject;
  label: string;
}

export class Pkcs11Token {
  private readonly m: Pkcs11Module;
  private readonly lib: Pkcs11Types.PKCS11;
  private readonly idle: Handle[] = [];
  private readonly waiting: Array<(s: Handle) => void> = [];
  private readonly all: Handle[] = [];
  private closed = false;

  private constructor(private readonly settings: Pkcs11Settings) {
    this.m = pkcs11Module();
    this.lib = openLibrary(settings.module);
  }

  /** Loads the module, finds the token, opens the sessions and logs in. Throws HsmUnavailableError. */
  static open(settings: Pkcs11Settings): Pkcs11Token {
    const token = new Pkcs11Token(settings);
    try {
      token.connect();
    } catch (err) {
      token.close();
      throw err instanceof CofferError ? err : new HsmUnavailableError(describe(err));
    }
    return token;
  }

  private connect(): void {
    const { m, lib, settings } = this;
    let slots: Handle[];
    try {
      slots = lib.C_GetSlotList(true);
    } catch (err) {
      throw new HsmUnavailableError(`cannot list slots: ${describe(err)}`);
    }
    const slot = slots.find((s) => {
      if (settings.tokenLabel !== undefined) return lib.C_GetTokenInfo(s).label.trim() === settings.tokenLabel;
      return slotId(s) === settings.slot;
    });
    if (!slot) {
      const which = settings.tokenLabel !== undefined ? `labelled "${settings.tokenLabel}"` : `in slot ${settings.slot}`;
      throw new HsmUnavailableError(`no token ${which} (initialise one, e.g. softhsm2-util --init-token)`);
    }
    for (let i = 0; i < settings.sessions; i++) {
      const session = lib.C_OpenSession(slot, m.CKF_SERIAL_SESSION | m.CKF_RW_SESSION);
      this.all.push(session);
      this.idle.push(session);
    }
    try {
      // Login is per application and token: one login covers every session.
      lib.C_Login(this.all[0]!, m.CKU_USER, settings.pin);
    } catch (err) {
      if (codeOf(err) !== m.CKR_USER_ALREADY_LOGGED_IN) {
        // The PIN is not part of the message; the return value name says what went wrong.
        throw new HsmUnavailableError(`login failed: ${describe(err)}`);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.all) {
      try {
        this.lib.C_CloseSession(s);
      } catch {
        /* gone already */
      }
    }
    this.all.length = 0;
    this.idle.length = 0;
    closeLibrary(this.settings.module);
  }

  private async withSession<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    if (this.closed) throw new HsmUnavailableError('the token connection is closed');
    const session = this.idle.pop() ?? (await new Promise<Handle>((resolve) => this.waiting.push(resolve)));
    try {
      return await fn(session);
    } finally {
      const next = this.waiting.shift();
      if (next) next(session);
      else this.idle.push(session);
    }
  }

  /** Handles of objects with this label and class (usually zero or one). */
  private find(session: Handle, label: string, cls: number): Handle[] {
    const { lib, m } = this;
    lib.C_FindObjectsInit(session, [
      { type: m.CKA_CLASS, value: cls },
      { type: m.CKA_LABEL, value: label },
    ]);
    try {
      return lib.C_FindObjects(session, 16);
    } finally {
      lib.C_FindObjectsFinal(session);
    }
  }

  /** The AES key with this label, or null when the token has none. */
  async findAesKey(label: string): Promise<Handle | null> {
    return this.guard(() => this.withSession((s) => this.find(s, label, this.m.CKO_SECRET_KEY)[0] ?? null));
  }

  /** Labels of every secret-key object whose label starts with `prefix`. */
  async listSecretKeyLabels(prefix: string): Promise<string[]> {
    return this.guard(() =>
      this.withSession((s) => {
        const { lib, m } = this;
        lib.C_FindObjectsInit(s, [{ type: m.CKA_CLASS, value: m.CKO_SECRET_KEY }]);
        let handles: Handle[];
        try {
          handles = lib.C_FindObjects(s, 1024);
        } finally {
          lib.C_FindObjectsFinal(s);
        }
        const labels: string[] = [];
        for (const h of handles) {
          const label = lib.C_GetAttributeValue(s, h, [{ type: m.CKA_LABEL }])[0]?.value.toString('utf8') ?? '';
          if (label.startsWith(prefix)) labels.push(label);
        }
        return labels;
      }),
    );
  }

  /** The protection attributes of a secret key (diagnostics and tests); null when absent. Never its value. */
  async describeKey(label: string): Promise<{ token: boolean; sensitive: boolean; extractable: boolean; valueLen: number } | null> {
    return this.guard(() =>
      this.withSession((s) => {
        const { lib, m } = this;
        const h = this.find(s, label, m.CKO_SECRET_KEY)[0];
        if (!h) return null;
        const [tok, sens, extr, len] = lib.C_GetAttributeValue(s, h, [
          { type: m.CKA_TOKEN },
          { type: m.CKA_SENSITIVE },
          { type: m.CKA_EXTRACTABLE },
          { type: m.CKA_VALUE_LEN },
        ]);
        const flag = (a: Pkcs11Types.AttributeResult | undefined) => a?.value[0] === 1;
        return { token: flag(tok), sensitive: flag(sens), extractable: flag(extr), valueLen: len ? len.value.readUInt32LE(0) : 0 };
      }),
    );
  }

  /** Reading CKA_VALUE of a key: succeeds only for non-sensitive keys (tests prove the root key's is refused). */
  async tryReadKeyValue(label: string): Promise<'refused' | 'readable' | 'absent'> {
    return this.withSession((s) => {
      const h = this.find(s, label, this.m.CKO_SECRET_KEY)[0];
      if (!h) return 'absent';
      try {
        this.lib.C_GetAttributeValue(s, h, [{ type: this.m.CKA_VALUE }]);
        return 'readable';
      } catch {
        return 'refused';
      }
    });
  }

  /**
   * Generates the root key inside the token: AES-256, a token object (it
   * persists), CKA_SENSITIVE and not extractable (its value never leaves).
   */
  async generateRootKey(label: string): Promise<Handle> {
    const { m } = this;
    return this.guard(() =>
      this.withSession((s) =>
        this.lib.C_GenerateKeyAsync(s, { mechanism: m.CKM_AES_KEY_GEN }, [...rootKeyTemplate(this.m, label), { type: m.CKA_VALUE_LEN, value: 32 }]),
      ),
    );
  }

  async destroyObject(handle: Handle): Promise<void> {
    await this.guard(() => this.withSession((s) => this.lib.C_DestroyObject(s, handle)));
  }

  /** Destroys every object (any class) with this label; returns how many. */
  async destroyByLabel(label: string): Promise<number> {
    return this.guard(() =>
      this.withSession((s) => {
        const { lib, m } = this;
        let n = 0;
        for (const cls of [m.CKO_SECRET_KEY, m.CKO_PRIVATE_KEY, m.CKO_PUBLIC_KEY]) {
          for (const h of this.find(s, label, cls)) {
            lib.C_DestroyObject(s, h);
            n += 1;
          }
        }
        return n;
      }),
    );
  }

  /** AES-256-GCM in the token; returns ciphertext ‖ 16-byte tag. */
  async encryptGcm(key: Handle, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Buffer> {
    return this.guard(() =>
      this.withSession(async (s) => {
        this.lib.C_EncryptInit(s, gcmMechanism(this.m, iv, aad), key);
        return this.lib.C_EncryptAsync(s, Buffer.from(plaintext), Buffer.alloc(plaintext.length + 16));
      }),
    );
  }

  /** AES-256-GCM decryption; a wrong tag, AAD or key is an IntegrityError naming `what`. */
  async decryptGcm(key: Handle, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, what: string): Promise<Buffer> {
    return this.withSession(async (s) => {
      try {
        this.lib.C_DecryptInit(s, gcmMechanism(this.m, iv, aad), key);
        return await this.lib.C_DecryptAsync(s, Buffer.from(ciphertext), Buffer.alloc(ciphertext.length));
      } catch (err) {
        const code = codeOf(err);
        // SoftHSM2 reports a tag mismatch as CKR_GENERAL_ERROR; others use CKR_ENCRYPTED_DATA_INVALID.
        if (code === this.m.CKR_GENERAL_ERROR || code === this.m.CKR_ENCRYPTED_DATA_INVALID || code === this.m.CKR_ENCRYPTED_DATA_LEN_RANGE) {
          throw new IntegrityError(what);
        }
        throw this.unavailable(err);
      }
    });
  }

  /**
   * An RSA-3072 key pair for BYOK imports: token objects (an import may come
   * hours later, after a restart), the private key sensitive and not
   * extractable, usable only to decrypt/unwrap.
   */
  async generateImportKeyPair(label: string): Promise<RsaKeyPairRef> {
    const { m } = this;
    return this.guard(() =>
      this.withSession(async (s) => {
        const templates = importKeyPairTemplates(m, label);
        const pair = await this.lib.C_GenerateKeyPairAsync(s, { mechanism: m.CKM_RSA_PKCS_KEY_PAIR_GEN }, templates.publicKey, templates.privateKey);
        const [n, e] = this.lib.C_GetAttributeValue(s, pair.publicKey, [{ type: m.CKA_MODULUS }, { type: m.CKA_PUBLIC_EXPONENT }]);
        const publicKey = createPublicKey({
          key: { kty: 'RSA', n: n!.value.toString('base64url'), e: e!.value.toString('base64url') },
          format: 'jwk',
        });
        return { publicKey, label };
      }),
    );
  }

  /**
   * Whether the token can do RSA-OAEP with `hash` on this key pair: probed with
   * an encryption under the public key (SoftHSM2 2.6 refuses SHA-256 there as
   * it does in C_UnwrapKey).
   */
  async supportsOaep(label: string, hash: OaepHash): Promise<boolean> {
    return this.guard(() =>
      this.withSession((s) => {
        const pub = this.find(s, label, this.m.CKO_PUBLIC_KEY)[0];
        if (!pub) return false;
        try {
          this.lib.C_EncryptInit(s, oaepMechanism(this.m, hash), pub);
          this.lib.C_Encrypt(s, Buffer.alloc(32), Buffer.alloc(512));
          return true;
        } catch {
          return false;
        }
      }),
    );
  }

  /**
   * Raw RSA (CKM_RSA_X_509) with the import private key: the padded block, for
   * OAEP decoding by the caller when the token cannot do OAEP with SHA-256.
   * The private key still never leaves the token.
   */
  async rawRsaDecrypt(label: string, block: Uint8Array): Promise<Buffer> {
    return this.withSession(async (s) => {
      const rsa = await this.privateKey(s, label);
      try {
        this.lib.C_DecryptInit(s, { mechanism: this.m.CKM_RSA_X_509 }, rsa);
        return await this.lib.C_DecryptAsync(s, Buffer.from(block), Buffer.alloc(block.length));
      } catch (err) {
        if (codeOf(err) === undefined) throw this.unavailable(err);
        throw new CofferError('invalid_key_material', 'the wrapped key material does not unwrap with this import key');
      }
    });
  }

  private async privateKey(s: Handle, label: string): Promise<Handle> {
    const h = this.find(s, label, this.m.CKO_PRIVATE_KEY)[0];
    if (!h) throw new CofferError('invalid_request', 'the import wrapping key is gone from the HSM (it expired or was used): get new import parameters');
    return h;
  }

  /**
   * Unwraps customer key material inside the token and returns a handle.
   *   direct: `wrapped` is the 32-byte key under RSA-OAEP.
   *   two-step: `wrapped` is an ephemeral AES key under RSA-OAEP followed by the target under
   *   AES-KWP (RFC 5649); the ephemeral key exists only as a session object and is destroyed.
   * `asRoot` makes the result a persistent, sensitive, non-extractable root key labelled `label`;
   * otherwise it is a session object whose value can be read (namespace KEKs live in host memory).
   * An HSM that cannot do OAEP with `hash` answers 400 unsupported_algorithm.
   */
  async unwrapImported(
    rsaLabel: string,
    hash: OaepHash,
    twoStep: boolean,
    wrapped: Uint8Array,
    target: { asRoot: true; label: string } | { asRoot: false },
  ): Promise<Handle> {
    const { m } = this;
    const rsaBytes = 384; // RSA-3072
    return this.withSession(async (s) => {
      const rsa = await this.privateKey(s, rsaLabel);
      const keyTemplate = target.asRoot ? rootKeyTemplate(m, target.label) : sessionKeyTemplate(m);
      const unwrapFailed = (err: unknown): never => {
        const code = codeOf(err);
        if (code === m.CKR_ARGUMENTS_BAD || code === m.CKR_MECHANISM_PARAM_INVALID || code === m.CKR_MECHANISM_INVALID) {
          throw new CofferError('unsupported_algorithm',
            `this HSM cannot unwrap with RSA-OAEP-${hash.toUpperCase()} (SoftHSM2 2.6 only does SHA-1); use RSAES_OAEP_SHA_1 or RSA_AES_KEY_WRAP_SHA_1`,
          );
        }
        if (code === undefined) throw this.unavailable(err);
        throw new CofferError('invalid_key_material', 'the wrapped key material does not unwrap with this import key');
      };
      if (!twoStep) {
        if (wrapped.length !== rsaBytes) throw new CofferError('invalid_key_material', `RSAES_OAEP wrapped material is ${rsaBytes} bytes`);
        try {
          return await this.lib.C_UnwrapKeyAsync(s, oaepMechanism(this.m, hash), rsa, Buffer.from(wrapped), keyTemplate);
        } catch (err) {
          return unwrapFailed(err);
        }
      }
      if (wrapped.length < rsaBytes + 40) throw new CofferError('invalid_key_material', 'RSA_AES_KEY_WRAP material is the RSA block followed by the AES-KWP wrapped key');
      let ephemeral: Handle;
      try {
        ephemeral = await this.lib.C_UnwrapKeyAsync(s, oaepMechanism(m, hash), rsa, Buffer.from(wrapped.subarray(0, rsaBytes)), ephemeralKeyTemplate(m));
      } catch (err) {
        return unwrapFailed(err);
      }
      try {
        return await this.lib.C_UnwrapKeyAsync(s, { mechanism: m.CKM_AES_KEY_WRAP_PAD }, ephemeral, Buffer.from(wrapped.subarray(rsaBytes)), keyTemplate);
      } catch (err) {
        return unwrapFailed(err);
      } finally {
        try {
          this.lib.C_DestroyObject(s, ephemeral);
        } catch {
          /* session objects die with the session anyway */
        }
      }
    });
  }

  /** Reads a (non-sensitive, session) key's value and destroys the object. The caller zeroes the bytes. */
  async takeKeyValue(handle: Handle): Promise<Uint8Array> {
    return this.guard(() =>
      this.withSession((s) => {
        try {
          const value = this.lib.C_GetAttributeValue(s, handle, [{ type: this.m.CKA_VALUE }])[0]!.value;
          const out = new Uint8Array(value);
          value.fill(0);
          return out;
        } finally {
          this.lib.C_DestroyObject(s, handle);
        }
      }),
    );
  }

  /** Random bytes from the token's generator. */
  async random(n: number): Promise<Buffer> {
    return this.guard(() => this.withSession((s) => this.lib.C_GenerateRandom(s, Buffer.alloc(n))));
  }

  /**
   * Runs `fn` on a pooled session with the raw library (seal/pkcs11-kms.ts builds the
   * named-key operations on it). A failure that is not a CofferError is a 503.
   */
  async use<T>(fn: (ctx: TokenContext) => Promise<T> | T): Promise<T> {
    return this.guard(() => this.withSession((session) => fn({ lib: this.lib, m: this.m, session, find: (label, cls) => this.find(session, label, cls) })));
  }

  /** Maps a PKCS#11 failure to 503 (device gone, session lost…) unless it is already a CofferError. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  private unavailable(err: unknown): CofferError {
    if (err instanceof CofferError) return err;
    return new HsmUnavailableError(describe(err));
  }
}

/** 96-bit random IVs for GCM (the root key wraps a few keys per rotation: far below 2^32). */
export function gcmIv(): Buffer {
  return randomBytes(12);
}
