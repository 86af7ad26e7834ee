/**
 * Bounded, time-limited cache of unwrapped keys (KEKs; and DEKs, whose ids
 * start with their KEK's). Every key that leaves the cache (expiry, LRU
 * eviction, namespace deletion, seal) is zeroed.
 */
import { zeroize, type KeyMaterial } from '../crypto/aead.js';

interface Entry {
  key: KeyMaterial;
  expiresAt: number;
}

export interface KekCacheStats {
  size: number;
  hits: number;
  misses: number;
}

export class KekCache {
  // Map keeps insertion order: the first entry is the least recently used.
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;
  hits = 0;
  misses = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
    /** Told each id that leaves the cache, after its key is zeroed. */
    private readonly onDrop?: (id: string) => void,
  ) {
    // Zero idle keys even when no request comes to notice they expired.
    this.sweeper = setInterval(() => this.sweep(), Math.min(ttlMs, 60_000));
    this.sweeper.unref();
  }

  get(id: string): KeyMaterial | undefined {
    const entry = this.entries.get(id);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    if (entry.expiresAt <= this.now()) {
      this.drop(id, entry);
      this.misses++;
      return undefined;
    }
    this.hits++;
    entry.expiresAt = this.now() + this.ttlMs;
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry.key;
  }

  /** Takes ownership of `key`: the cache zeroes it when it is dropped. */
  set(id: string, key: KeyMaterial): void {
    const old = this.entries.get(id);
    if (old && old.key !== key) this.drop(id, old);
    this.entries.set(id, { key, expiresAt: this.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) {
      const [oldestId, oldest] = this.entries.entries().next().value as [string, Entry];
      this.drop(oldestId, oldest);
    }
  }

  /** Drops one entry, if present. */
  evict(id: string): void {
    const entry = this.entries.get(id);
    if (entry) this.drop(id, entry);
  }

  /** Drops every entry whose id starts with `prefix`. */
  evictPrefix(prefix: string): void {
    for (const [id, entry] of this.entries) if (id.startsWith(prefix)) this.drop(id, entry);
  }

  sweep(): void {
    const now = this.now();
    for (const [id, entry] of this.entries) if (entry.expiresAt <= now) this.drop(id, entry);
  }

  clear(): void {
    for (const [id, entry] of this.entries) this.drop(id, entry);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.clear();
  }

  stats(): KekCacheStats {
    return { size: this.entries.size, hits: this.hits, misses: this.misses };
  }

  private drop(id: string, entry: Entry): void {
    zeroize(entry.key);
    this.entries.delete(id);
    this.onDrop?.(id);
  }
}
