/**
 * Bounded, time-limited cache of what a KMS operation needs of a named key:
 * its row (with the namespace id it was found under), its unwrapped versions
 * and, for private keys, the parsed node:crypto KeyObject. Without it every
 * call costs three queries, a KEK unwrap and (signing) a PKCS#8 parse.
 *
 * Correctness rests on invalidation, as in secrets/read-cache.ts:
 * - every change to a key publishes a `kms-key` event in its transaction and
 *   drops the key here after the commit; other servers drop it on the NOTIFY;
 * - namespace events (disabled, shredded, deleted, rewrapped) drop the
 *   namespace's keys, by name (`namespace`) or by id (`namespace-keys`);
 * - a caller records the generation before it queries and fills the cache only
 *   if no invalidation happened meanwhile, so a slow load can never re-insert
 *   what a concurrent change just invalidated;
 * - while the change feed is down the cache is empty and off.
 * The TTL (from insertion, not refreshed by use) only bounds how long a change
 * made behind Coffer's back, directly in the database, can go unseen.
 *
 * Key material leaving the cache (invalidation, expiry, eviction, seal) is
 * zeroed. Callers get the cache's buffer only to copy it: an invalidation
 * while they await something else would zero it under them.
 */
import type { KeyObject } from 'node:crypto';
import type { ChangeEvent } from '../../cluster/events.js';
import { zeroize } from '../../crypto/aead.js';
import type { KmsKeyRow } from '../../storage/repos/kms-keys.js';

/** Versions kept per key: decrypting under many old versions must not grow one entry without bound. */
export const MAX_CACHED_VERSIONS_PER_KEY = 16;

export interface CachedVersion {
  readonly material: Uint8Array;
  /** Parsed once, on the first private-key use (OpenSSL holds its own copy). */
  privateKey?: KeyObject;
}

interface Entry {
  namespace: string;
  namespaceId: string;
  row: KmsKeyRow;
  versions: Map<number, CachedVersion>;
  expiresAt: number;
}

export interface KmsKeyCacheStats {
  size: number;
  hits: number;
  misses: number;
  /** Entries pushed out to stay within the size bound (least recently used first). */
  evictedCapacity: number;
  /** Entries dropped because their TTL ran out (on use or by the sweeper). */
  evictedExpired: number;
}

const SEP = '\u0000';

export class KmsKeyCache {
  // Map keeps insertion order: the first entry is the least recently used.
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;
  private gen = 0;
  private enabled: boolean;
  hits = 0;
  misses = 0;
  evictedCapacity = 0;
  evictedExpired = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    enabled: boolean,
    private readonly now: () => number = Date.now,
  ) {
    this.enabled = enabled && maxEntries > 0;
    // Zero idle material even when no request comes to notice it expired.
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, Math.min(ttlMs, 60_000)));
    this.sweeper.unref();
  }

  /** Read before querying the database; pass to the put* calls. */
  get generation(): number {
    return this.gen;
  }

  /** The cached row of a key and the id of its namespace. */
  key(namespace: string, name: string): { namespaceId: string; row: KmsKeyRow } | undefined {
    const entry = this.live(namespace + SEP + name);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return { namespaceId: entry.namespaceId, row: entry.row };
  }

  putKey(namespace: string, name: string, namespaceId: string, row: KmsKeyRow, generation: number): void {
    if (!this.enabled || generation !== this.gen) return;
    const id = namespace + SEP + name;
    const old = this.entries.get(id);
    if (old) this.drop(id, old);
    this.entries.set(id, { namespace, namespaceId, row, versions: new Map(), expiresAt: this.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) {
      const [oldestId, oldest] = this.entries.entries().next().value as [string, Entry];
      this.drop(oldestId, oldest);
      this.evictedCapacity++;
    }
  }

  /** A cached version of the key with id `keyId` (copy its material, do not keep it). */
  version(namespace: string, name: string, keyId: string, version: number): CachedVersion | undefined {
    const entry = this.live(namespace + SEP + name);
    if (!entry || entry.row.id !== keyId) return undefined;
    const v = entry.versions.get(version);
    if (v) {
      entry.versions.delete(version);
      entry.versions.set(version, v);
    }
    return v;
  }

  /** Keeps a copy of `material` (the caller still owns and zeroes its own); the entry stored, if any. */
  putVersion(namespace: string, name: string, keyId: string, version: number, material: Uint8Array, generation: number): CachedVersion | undefined {
    if (!this.enabled || generation !== this.gen) return undefined;
    const entry = this.live(namespace + SEP + name);
    if (!entry || entry.row.id !== keyId) return undefined;
    const old = entry.versions.get(version);
    if (old) zeroize(old.material);
    const stored: CachedVersion = { material: new Uint8Array(material) };
    entry.versions.delete(version);
    entry.versions.set(version, stored);
    while (entry.versions.size > MAX_CACHED_VERSIONS_PER_KEY) {
      const [oldest, v] = entry.versions.entries().next().value as [number, CachedVersion];
      zeroize(v.material);
      entry.versions.delete(oldest);
    }
    return stored;
  }

  /** Drops one key (by id, whatever name it is cached under). */
  invalidateKey(namespaceId: string, keyId: string): void {
    this.gen++;
    for (const [id, entry] of this.entries) if (entry.namespaceId === namespaceId && entry.row.id === keyId) this.drop(id, entry);
  }

  invalidateNamespace(namespace: string): void {
    this.gen++;
    for (const [id, entry] of this.entries) if (entry.namespace === namespace) this.drop(id, entry);
  }

  invalidateNamespaceId(namespaceId: string): void {
    this.gen++;
    for (const [id, entry] of this.entries) if (entry.namespaceId === namespaceId) this.drop(id, entry);
  }

  /** Drops what a change-feed event makes stale; other kinds are not this cache's business. */
  apply(event: ChangeEvent): void {
    if (event.kind === 'kms-key') this.invalidateKey(event.namespaceId, event.keyId);
    else if (event.kind === 'namespace') this.invalidateNamespace(event.namespace);
    else if (event.kind === 'namespace-keys') this.invalidateNamespaceId(event.namespaceId);
  }

  /** Empties the cache and turns it on or off (off while the change feed is down). */
  reset(enabled: boolean): void {
    this.clear();
    this.enabled = enabled && this.maxEntries > 0;
  }

  sweep(): void {
    const now = this.now();
    for (const [id, entry] of this.entries) {
      if (entry.expiresAt <= now) {
        this.drop(id, entry);
        this.evictedExpired++;
      }
    }
  }

  clear(): void {
    this.gen++;
    for (const [id, entry] of this.entries) this.drop(id, entry);
  }

  /** At seal: zeroes everything and stops the sweeper; the cache stays off. */
  close(): void {
    clearInterval(this.sweeper);
    this.reset(false);
  }

  stats(): KmsKeyCacheStats {
    return { size: this.entries.size, hits: this.hits, misses: this.misses, evictedCapacity: this.evictedCapacity, evictedExpired: this.evictedExpired };
  }

  /** Material held (tests check that what leaves is zeroed). */
  get versionCount(): number {
    let n = 0;
    for (const entry of this.entries.values()) n += entry.versions.size;
    return n;
  }

  private live(id: string): Entry | undefined {
    if (!this.enabled) return undefined;
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.drop(id, entry);
      this.evictedExpired++;
      return undefined;
    }
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry;
  }

  private drop(id: string, entry: Entry): void {
    for (const v of entry.versions.values()) zeroize(v.material);
    entry.versions.clear();
    this.entries.delete(id);
  }
}
