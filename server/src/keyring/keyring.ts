/**
 * Envelope encryption over the key hierarchy:
 *   root key → namespace KEK (versioned) → per-version DEK → secret value.
 * The keyring is the only code that sees KEKs and DEKs in plaintext; it hands
 * back ciphertexts and plaintext values, never keys.
 */
import type { RootKey } from '../seal/root-key.js';
import type { Executor } from '../storage/executor.js';
import type { NamespaceKeysRepo } from '../storage/repos/namespace-keys.js';
import {
  KEY_BYTES,
  NONCE_LENGTH,
  generateKeyMaterial,
  openWithKey,
  randomNonces,
  sealWithKey,
  zeroize,
  type KeyMaterial,
} from '../crypto/aead.js';
import { aad, namespaceAads } from '../crypto/context.js';
import { KekCache } from './kek-cache.js';
import { CofferError } from '../errors.js';

export interface SecretVersionRef {
  namespaceId: string;
  secretId: string;
  version: number;
}

export interface EncryptedValue {
  kekVersion: number;
  wrappedDek: Uint8Array;
  ciphertext: Uint8Array;
}

export class Keyring {
  private readonly cache: KekCache;
  /**
   * Unwrapped DEKs of recently read versions (null: off), so that a read opens one envelope, not
   * two — half the AEAD work of a bulk read. A DEK is no more exposed than the KEK that unwraps
   * it, which sits in `cache` anyway: its id starts with its KEK's id, and it leaves with that
   * KEK (expiry, eviction, destruction, namespace shredding, seal), zeroed. The id holds the
   * whole context the unwrap authenticated (namespace, KEK version, secret, version), and a hit
   * also needs the presented wrapped bytes to be the ones the DEK was unwrapped from
   * (`dekSources`), so it stands for exactly the unwrap that would have succeeded; the value's
   * own envelope is still opened and checked on every read. (The wrapped bytes used to be part
   * of the id: base64 of them was 5% of a bulk read's profile.)
   */
  private readonly deks: KekCache | null;
  /** The wrapped DEK each cached DEK came from (a copy: not a view pinning a driver's row buffer), by the same id. */
  private readonly dekSources = new Map<string, Uint8Array>();
  private readonly loading = new Map<string, Promise<KeyMaterial>>();

  constructor(
    private readonly keys: Pick<NamespaceKeysRepo, 'findWrapped'>,
    private root: RootKey,
    cache: { ttlMs: number; maxEntries: number; dekMaxEntries?: number },
  ) {
    const dekMax = cache.dekMaxEntries ?? 0;
    this.deks = dekMax > 0 ? new KekCache(cache.ttlMs, dekMax, Date.now, (id) => this.dekSources.delete(id)) : null;
    this.cache = new KekCache(cache.ttlMs, cache.maxEntries, Date.now, (kekId) => this.deks?.evictPrefix(`${kekId}:`));
  }

  get rootVersion(): number {
    return this.root.version;
  }

  /** Generates a KEK and returns it wrapped by the root key, ready to store. */
  async generateWrappedKek(namespaceId: string, kekVersion: number): Promise<Uint8Array> {
    return this.wrapKekMaterial(namespaceId, kekVersion);
  }

  /**
   * Wraps KEK material under the root key as `kekVersion` of a namespace, ready
   * to store: the given 256-bit `material` (BYOK import; the caller keeps
   * ownership and zeroes it), or fresh random material when none is given.
   */
  async wrapKekMaterial(namespaceId: string, kekVersion: number, material?: KeyMaterial): Promise<Uint8Array> {
    if (material !== undefined && material.length !== KEY_BYTES) {
      throw new CofferError('invalid_request', `KEK material must be ${KEY_BYTES * 8} bits`);
    }
    const kek = material ?? generateKeyMaterial();
    try {
      return await this.root.wrapKey(kek, aad.kek(namespaceId, kekVersion, this.root.version));
    } finally {
      if (material === undefined) zeroize(kek);
    }
  }

  /**
   * Rewraps DEKs from the KEK versions they are under to `targetVersion`. Only
   * the wrapped DEKs change (their AAD names the KEK version); the value
   * ciphertexts stay as they are. Returns the new wrapped DEKs in input order.
   */
  async rewrapDeks(
    namespaceId: string,
    targetVersion: number,
    rows: ReadonlyArray<{ secretId: string; version: number; kekVersion: number; wrappedDek: Uint8Array }>,
    executor?: Executor,
  ): Promise<Uint8Array[]> {
    const versions = new Set<number>([targetVersion]);
    for (const row of rows) versions.add(row.kekVersion);
    return this.withKeks(namespaceId, [...versions], executor, (keks) => {
      const target = keks.get(targetVersion)!;
      // Bulk work: one CSPRNG call per batch.
      const nonces = randomNonces(rows.length);
      return rows.map((row, i) => {
        const dek = openWithKey(
          keks.get(row.kekVersion)!,
          row.wrappedDek,
          aad.dek(namespaceId, row.secretId, row.version, row.kekVersion),
          'a secret version',
        );
        try {
          const nonce = nonces.subarray(i * NONCE_LENGTH, (i + 1) * NONCE_LENGTH);
          return sealWithKey(target, dek, aad.dek(namespaceId, row.secretId, row.version, targetVersion), nonce);
        } finally {
          zeroize(dek);
        }
      });
    });
  }

  /** Forgets one cached KEK version (it was destroyed). */
  evictKek(namespaceId: string, kekVersion: number): void {
    this.cache.evict(`${namespaceId}:${kekVersion}`);
  }

  /** Encrypts one secret version's value under a fresh DEK, wrapped by the given KEK version. */
  async encryptValue(
    ref: SecretVersionRef,
    kekVersion: number,
    plaintext: Uint8Array,
    executor?: Executor,
  ): Promise<EncryptedValue> {
    return this.withKek(ref.namespaceId, kekVersion, executor, (kek) => {
      const dek = generateKeyMaterial();
      try {
        return {
          kekVersion,
          ciphertext: sealWithKey(dek, plaintext, aad.secretValue(ref.namespaceId, ref.secretId, ref.version)),
          wrappedDek: sealWithKey(kek, dek, aad.dek(ref.namespaceId, ref.secretId, ref.version, kekVersion)),
        };
      } finally {
        zeroize(dek);
      }
    });
  }

  /** Decrypts one secret version's value; IntegrityError if anything was altered or moved. */
  async decryptValue(ref: SecretVersionRef, stored: EncryptedValue): Promise<Uint8Array> {
    return this.withKek(ref.namespaceId, stored.kekVersion, undefined, (kek) => {
      const what = 'a secret version';
      const dek = this.openDek(kek, ref.namespaceId, ref.secretId, ref.version, stored, () => aad.dek(ref.namespaceId, ref.secretId, ref.version, stored.kekVersion));
      try {
        return openWithKey(dek.key, stored.ciphertext, aad.secretValue(ref.namespaceId, ref.secretId, ref.version), what);
      } finally {
        if (!dek.cached) zeroize(dek.key);
      }
    });
  }

  /**
   * Decrypts many secret versions of one namespace (a bulk read): the KEKs are
   * looked up once and the AADs share their namespace prefix. `use` gets each
   * plaintext in input order and must be done with it when it returns: it is
   * zeroed right after. IntegrityError as `decryptValue`.
   */
  async decryptValues(namespaceId: string, rows: ReadonlyArray<{ secretId: string; version: number } & EncryptedValue>, use: (plaintext: Uint8Array, index: number) => void): Promise<void> {
    const versions = [...new Set(rows.map((r) => r.kekVersion))];
    const aads = namespaceAads(namespaceId);
    const what = 'a secret version';
    await this.withKeks(namespaceId, versions, undefined, (keks) => {
      rows.forEach((row, i) => {
        const dek = this.openDek(keks.get(row.kekVersion)!, namespaceId, row.secretId, row.version, row, () => aads.dek(row.secretId, row.version, row.kekVersion));
        let plaintext: Uint8Array;
        try {
          plaintext = openWithKey(dek.key, row.ciphertext, aads.secretValue(row.secretId, row.version), what);
        } finally {
          if (!dek.cached) zeroize(dek.key);
        }
        try {
          use(plaintext, i);
        } finally {
          zeroize(plaintext);
        }
      });
    });
  }

  /**
   * A version's DEK: from the DEK cache, or unwrapped under `kek` (then cached). `cached`: the
   * cache owns the key (the caller must not zero it; it stays valid until the caller returns,
   * everything here being synchronous); otherwise the caller zeroes it.
   */
  private openDek(
    kek: KeyMaterial,
    namespaceId: string,
    secretId: string,
    version: number,
    stored: Pick<EncryptedValue, 'kekVersion' | 'wrappedDek'>,
    context: () => Uint8Array,
  ): { key: KeyMaterial; cached: boolean } {
    if (!this.deks) return { key: openWithKey(kek, stored.wrappedDek, context(), 'a secret version'), cached: false };
    const wrapped = stored.wrappedDek;
    const id = `${namespaceId}:${stored.kekVersion}:${secretId}:${version}`;
    const hit = this.deks.get(id);
    // Other wrapped bytes under the same id (altered, or rewrapped meanwhile) are unwrapped and checked like a miss.
    if (hit && sameBytes(this.dekSources.get(id), wrapped)) return { key: hit, cached: true };
    const key = openWithKey(kek, wrapped, context(), 'a secret version');
    this.deks.set(id, key);
    this.dekSources.set(id, new Uint8Array(wrapped));
    return { key, cached: true };
  }

  /**
   * Wraps key material (a named key version, kms/named-keys) under a namespace
   * KEK version, binding `context` (an aad.* value naming the row). The KEK
   * never leaves the keyring; the caller keeps and zeroes `material`.
   */
  async wrapUnderKek(namespaceId: string, kekVersion: number, material: Uint8Array, context: Uint8Array, executor?: Executor): Promise<Uint8Array> {
    return this.withKek(namespaceId, kekVersion, executor, (kek) => sealWithKey(kek, material, context));
  }

  /**
   * Unwraps what `wrapUnderKek` wrapped; IntegrityError naming `what` if the
   * bytes or their context were altered or moved. The caller owns and zeroes the result.
   */
  async unwrapUnderKek(namespaceId: string, kekVersion: number, wrapped: Uint8Array, context: Uint8Array, what: string, executor?: Executor): Promise<KeyMaterial> {
    return this.withKek(namespaceId, kekVersion, executor, (kek) => openWithKey(kek, wrapped, context, what));
  }

  /**
   * Moves material wrapped by `wrapUnderKek` to KEK version `targetVersion`
   * (the KEK rewrap of a namespace); each row names the context it is under
   * now and the one it gets. Returns the new wrapped bytes in input order.
   */
  async rewrapUnderKek(
    namespaceId: string,
    targetVersion: number,
    rows: ReadonlyArray<{ kekVersion: number; wrapped: Uint8Array; from: Uint8Array; to: Uint8Array; what: string }>,
    executor?: Executor,
  ): Promise<Uint8Array[]> {
    const versions = new Set<number>([targetVersion]);
    for (const row of rows) versions.add(row.kekVersion);
    return this.withKeks(namespaceId, [...versions], executor, (keks) =>
      rows.map((row) => {
        const material = openWithKey(keks.get(row.kekVersion)!, row.wrapped, row.from, row.what);
        try {
          return sealWithKey(keks.get(targetVersion)!, material, row.to);
        } finally {
          zeroize(material);
        }
      }),
    );
  }

  /** Unwraps a system key (e.g. the token signing key). The caller owns and zeroes the result. */
  async unwrapSystemKey(name: string, version: number, wrapped: Uint8Array, rootVersion: number): Promise<KeyMaterial> {
    return this.root.unwrapKey(wrapped, aad.systemKey(name, version, rootVersion), `system key ${name}`);
  }

  async wrapSystemKey(name: string, version: number, key: KeyMaterial): Promise<Uint8Array> {
    return this.root.wrapKey(key, aad.systemKey(name, version, this.root.version));
  }

  /** Called when a KEK row is under a newer root version than this keyring's (set by the core). */
  onRootBehind: () => Promise<void> = async () => undefined;

  /**
   * Puts a new root key version in effect (root rotation, seal migration) and
   * returns the previous one for the caller to retire once nothing needs it.
   * Cached KEKs stay: their value did not change, only their wrapping.
   */
  replaceRoot(next: RootKey): RootKey {
    const previous = this.root;
    this.root = next;
    return previous;
  }

  /** The root key in effect (for rewrapping under a new version). */
  get rootKey(): RootKey {
    return this.root;
  }

  /**
   * Runs `fn` with a namespace KEK version in plaintext: for an escrow export,
   * which wraps it under the requester's public key. `fn` is synchronous, so
   * the key cannot escape or be zeroed while in use.
   */
  async withKekMaterial<T>(namespaceId: string, kekVersion: number, fn: (kek: KeyMaterial) => T): Promise<T> {
    return this.withKek(namespaceId, kekVersion, undefined, fn);
  }

  /** Forgets (and zeroes) every cached KEK of a namespace (it was deleted or shredded). */
  evictNamespace(namespaceId: string): void {
    this.cache.evictPrefix(`${namespaceId}:`);
    this.deks?.evictPrefix(`${namespaceId}:`);
  }

  cacheStats() {
    return this.cache.stats();
  }

  /** Zeroes every cached key and the root key held in memory. */
  destroy(): void {
    this.cache.close();
    this.deks?.close();
    this.root.destroy();
  }

  /**
   * Runs `fn` with the plaintext KEK. `fn` is synchronous on purpose: the key
   * cannot be evicted and zeroed while it is in use, and it cannot escape.
   *
   * Inside a transaction the KEK is loaded through that transaction: another
   * connection may not be free (PGlite has exactly one, and the transaction
   * holds it), so neither a fresh query nor joining a load queued behind the
   * transaction could ever finish.
   */
  private async withKek<T>(
    namespaceId: string,
    kekVersion: number,
    executor: Executor | undefined,
    fn: (kek: KeyMaterial) => T,
  ): Promise<T> {
    const id = `${namespaceId}:${kekVersion}`;
    const cached = this.cache.get(id);
    if (cached) return fn(cached);
    if (executor) {
      await this.loadKek(executor, namespaceId, kekVersion);
    } else {
      let pending = this.loading.get(id);
      if (!pending) {
        pending = this.loadKek(undefined, namespaceId, kekVersion).finally(() => this.loading.delete(id));
        this.loading.set(id, pending);
      }
      await pending;
    }
    // Re-read from the cache: a concurrent seal or eviction may have dropped it.
    const key = this.cache.get(id);
    if (!key) throw new CofferError('unavailable', 'key was evicted during use; retry');
    return fn(key);
  }

  /** Like `withKek`, with several versions of one namespace's KEK at once. */
  private async withKeks<T>(
    namespaceId: string,
    kekVersions: number[],
    executor: Executor | undefined,
    fn: (keks: Map<number, KeyMaterial>) => T,
  ): Promise<T> {
    // Load each missing version (one at a time: inside a transaction they share one connection).
    for (const version of kekVersions) {
      await this.withKek(namespaceId, version, executor, () => undefined);
    }
    const keks = new Map<number, KeyMaterial>();
    for (const version of kekVersions) {
      const key = this.cache.get(`${namespaceId}:${version}`);
      if (!key) throw new CofferError('unavailable', 'key was evicted during use; retry');
      keks.set(version, key);
    }
    return fn(keks);
  }

  /** Through `executor` inside a transaction; otherwise on the database (see withKek). */
  private async loadKek(executor: Executor | undefined, namespaceId: string, kekVersion: number): Promise<KeyMaterial> {
    const row = await this.keys.findWrapped(namespaceId, kekVersion, executor);
    if (!row || !row.wrapped_key) {
      throw new CofferError('not_found', 'the key version for this data was destroyed');
    }
    // Another server rotated the root key and this one has not followed yet: follow first.
    if (row.root_version > this.root.version) await this.onRootBehind();
    const kek = await this.root.unwrapKey(
      row.wrapped_key,
      aad.kek(namespaceId, kekVersion, row.root_version),
      'a namespace key',
    );
    this.cache.set(`${namespaceId}:${kekVersion}`, kek);
    return kek;
  }
}

/** Equality of public bytes (wrapped DEKs are ciphertext: no need for constant time). */
function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (a === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
