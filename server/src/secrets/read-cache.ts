/**
 * A bounded cache of the latest encrypted version of recently read secrets,
 * so that a hot read needs no database round trip. It holds exactly what the
 * database holds (wrapped DEK and ciphertext), and may keep decrypted values
 * with it (below).
 *
 * Correctness rests on invalidation, not on the TTL:
 * - every change through this server invalidates after its commit;
 * - changes through other servers sharing PostgreSQL arrive by NOTIFY;
 * - a reader records the generation before it queries and fills the cache
 *   only if no invalidation happened meanwhile, so a slow read can never
 *   re-insert what a concurrent write just invalidated;
 * - if the change feed is interrupted, the cache is emptied and stays off
 *   until the feed is back.
 * - a reader who has seen a newer version than the cached one (min_version,
 *   e.g. its own write through another server) skips the entry.
 * The TTL only bounds how long a change made behind Coffer's back (directly
 * in the database) can go unseen.
 *
 * It also keeps the rows of recent bulk-read folder pages (one database
 * query's answer each), under the same rules, so that a repeated bulk read
 * needs no round trip either; any change in a namespace drops all of its
 * pages. Versions held in pages count towards the same bound.
 *
 * A page may also hold the decrypted values of its rows (as the bulk read's JSON
 * fragments), so that a repeated bulk read opens no envelope: the one plaintext
 * this server keeps beyond a request. It is no wider an exposure than what is
 * already in memory (the page's ciphertext and, in the keyring's DEK cache, its
 * DEKs), it lives and dies with its page (every rule above applies to it), it is
 * zeroed when the page goes (change, expiry, eviction, feed down, seal), and its
 * bytes have their own bound (0 = never kept).
 *
 * A cached latest version may likewise hold its single read's response body (the
 * exact JSON bytes of the read), under the very same rules: kept while its entry
 * lives, zeroed when the entry goes (change, expiry, eviction, replacement, a
 * min_version reader passing it by, feed down, seal, stop), counted in the same
 * byte bound.
 */
import type { ChangeEvent } from '../cluster/events.js';

export interface CachedVersion {
  namespace_id: string;
  secret_id: string;
  version: number;
  type: string;
  metadata: Record<string, string>;
  kek_version: number | null;
  wrapped_dek: Uint8Array | null;
  ciphertext: Uint8Array | null;
  created_at: Date;
  deleted_at: Date | null;
  destroyed_at: Date | null;
}

interface Entry {
  value: CachedVersion;
  expiresAt: number;
  /** False once dropped: a body offered for its version then is refused. */
  live: boolean;
  /** The single read's response body, owned by the cache (zeroed with the entry). */
  body: Uint8Array | null;
  /** Read since eviction last passed it (see `evict`). */
  hot: boolean;
}

/** A row of a folder page: a secret's path and its readable latest version. */
export type CachedFolderRow = Omit<CachedVersion, 'namespace_id' | 'deleted_at' | 'destroyed_at'> & { path: string };

interface PageEntry {
  rows: readonly CachedFolderRow[];
  expiresAt: number;
  /** False once dropped: a value offered for one of its rows then is refused. */
  live: boolean;
  /** The decrypted values of its rows, owned by the cache (zeroed with the page). */
  values: Map<CachedFolderRow, Uint8Array> | null;
  /** Read since eviction last passed it (see `evict`). */
  hot: boolean;
}

const SEP = '\u0000';

export class SecretReadCache {
  private readonly entries = new Map<string, Entry>();
  private readonly pages = new Map<string, PageEntry>();
  private pageRows = 0;
  /** Which live page each cached row belongs to, for its value. */
  private readonly owners = new WeakMap<CachedFolderRow, PageEntry>();
  /** Which entry each cached latest version is, for its body. */
  private readonly entryOf = new WeakMap<CachedVersion, Entry>();
  private valueBytes = 0;
  /** Entries holding a body (the sweeper skips the entries when none do). */
  private bodies = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private gen = 0;
  private enabled: boolean;

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
    /** Bound on the bytes of decrypted page values (0 = none kept). */
    private readonly maxValueBytes = 0,
  ) {
    this.enabled = maxEntries > 0;
    // Zero the values of expired pages even when no request comes to notice they expired.
    if (maxValueBytes > 0) {
      this.sweeper = setInterval(() => this.sweep(), Math.min(ttlMs, 60_000));
      this.sweeper.unref();
    }
  }

  /** Empties the cache for good (server stop): kept values are zeroed, the sweeper stops. */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.reset(false);
  }

  /** Drops expired pages and entries holding a body (and zeroes their values). */
  sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.pages) if (entry.expiresAt <= now) this.dropPage(key, entry);
    if (this.bodies === 0) return;
    for (const [key, entry] of this.entries) if (entry.body && entry.expiresAt <= now) this.dropEntry(key, entry);
  }

  /** Read before querying the database; pass to `set`. */
  get generation(): number {
    return this.gen;
  }

  /**
   * The cached latest version; none when it is older than `minVersion` (a reader who has seen a
   * newer one, whose notification has not arrived yet: the entry goes, the database answers).
   */
  get(namespace: string, path: string, minVersion = 0): CachedVersion | undefined {
    if (!this.enabled) return undefined;
    const key = namespace + SEP + path;
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now() || entry.value.version < minVersion) {
      this.dropEntry(key, entry);
      return undefined;
    }
    entry.hot = true;
    return entry.value;
  }

  set(namespace: string, path: string, value: CachedVersion, generation: number): void {
    if (!this.enabled || generation !== this.gen) return;
    const key = namespace + SEP + path;
    const old = this.entries.get(key);
    if (old) this.dropEntry(key, old);
    const entry: Entry = { value, expiresAt: this.now() + this.ttlMs, live: true, body: null, hot: false };
    this.entries.set(key, entry);
    this.entryOf.set(value, entry);
    if (this.entries.size > this.maxEntries) evict(this.entries, entry, (k, e) => this.dropEntry(k, e));
  }

  /** Whether a body offered now could be kept at all (saves the caller a copy when not). */
  get keepsValues(): boolean {
    return this.enabled && this.maxValueBytes > 0;
  }

  /**
   * The kept response body of a version `get` returned, if its entry still lives. Owned by the
   * cache: copy it before the next await (a change may zero it then), never keep, send or zero it.
   */
  getBody(version: CachedVersion): Uint8Array | undefined {
    if (!this.enabled) return undefined;
    const entry = this.entryOf.get(version);
    if (!entry?.live || entry.expiresAt <= this.now()) return undefined;
    return entry.body ?? undefined;
  }

  /**
   * Offers the response body of a version the caller got from `get` or stored with `set`, like
   * `setValue`: the cache takes `body` over, kept while that version's entry lives, or zeroed now
   * (entry gone, replaced or expired, the cache off, a body already kept, over the byte bound).
   */
  setBody(version: CachedVersion, body: Uint8Array): void {
    const entry = this.entryOf.get(version);
    if (
      !this.enabled || !entry?.live || entry.expiresAt <= this.now() || entry.body !== null ||
      this.valueBytes + body.length > this.maxValueBytes
    ) {
      if (entry?.body !== body) body.fill(0);
      return;
    }
    entry.body = body;
    this.valueBytes += body.length;
    this.bodies++;
  }

  /** The rows of a folder page (`query` names the folder, cursor and limit), if cached and fresh. */
  getPage(namespace: string, query: string): readonly CachedFolderRow[] | undefined {
    if (!this.enabled) return undefined;
    const key = namespace + SEP + query;
    const entry = this.pages.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.dropPage(key, entry);
      return undefined;
    }
    entry.hot = true;
    return entry.rows;
  }

  /** Like `set`, for a folder page; pages are evicted (see `evict`) while their versions exceed the bound. */
  setPage(namespace: string, query: string, rows: readonly CachedFolderRow[], generation: number): void {
    if (!this.enabled || generation !== this.gen || rows.length > this.maxEntries) return;
    const key = namespace + SEP + query;
    const old = this.pages.get(key);
    if (old) this.dropPage(key, old);
    const entry: PageEntry = { rows, expiresAt: this.now() + this.ttlMs, live: true, values: null, hot: false };
    this.pages.set(key, entry);
    for (const row of rows) this.owners.set(row, entry);
    this.pageRows += rows.length;
    while (this.pageRows > this.maxEntries && this.pages.size > 1) evict(this.pages, entry, (k, e) => this.dropPage(k, e));
  }

  /**
   * The cached value of a row of a cached page, if its page is still live. Owned by the cache:
   * use it before the next await (a change may zero it then), never keep or zero it.
   */
  getValue(row: CachedFolderRow): Uint8Array | undefined {
    if (!this.enabled) return undefined;
    const entry = this.owners.get(row);
    if (!entry?.live || entry.expiresAt <= this.now()) return undefined;
    return entry.values?.get(row);
  }

  /**
   * Offers the decrypted value of a row the caller got from `getPage`. The cache takes `value`
   * over: kept while the row's page lives, or zeroed now (page gone or expired, the cache off,
   * a value already kept, over the byte bound). The page's life is the whole rule: a change
   * that could make the row stale drops its page, whenever the value was decrypted.
   */
  setValue(row: CachedFolderRow, value: Uint8Array): void {
    const entry = this.owners.get(row);
    const old = entry?.values?.get(row);
    if (
      !this.enabled || !entry?.live || entry.expiresAt <= this.now() || old !== undefined ||
      this.valueBytes + value.length > this.maxValueBytes
    ) {
      if (old !== value) value.fill(0);
      return;
    }
    (entry.values ??= new Map()).set(row, value);
    this.valueBytes += value.length;
  }

  /** Bytes of decrypted values held (metrics, tests). */
  get heldValueBytes(): number {
    return this.valueBytes;
  }

  invalidate(namespace: string, path: string): void {
    this.gen++;
    const key = namespace + SEP + path;
    const entry = this.entries.get(key);
    if (entry) this.dropEntry(key, entry);
    this.dropPages(namespace);
  }

  invalidateNamespace(namespace: string): void {
    this.gen++;
    const prefix = namespace + SEP;
    for (const [key, entry] of this.entries) if (key.startsWith(prefix)) this.dropEntry(key, entry);
    this.dropPages(namespace);
  }

  /** Empties the cache and turns it on or off (off while the change feed is down). */
  reset(enabled: boolean): void {
    this.gen++;
    for (const [key, entry] of this.entries) this.dropEntry(key, entry);
    for (const [key, entry] of this.pages) this.dropPage(key, entry);
    this.enabled = enabled && this.maxEntries > 0;
  }

  private dropPages(namespace: string): void {
    if (this.pages.size === 0) return;
    const prefix = namespace + SEP;
    for (const [key, entry] of this.pages) if (key.startsWith(prefix)) this.dropPage(key, entry);
  }

  private dropEntry(key: string, entry: Entry): void {
    this.entries.delete(key);
    entry.live = false;
    if (entry.body) {
      entry.body.fill(0);
      this.valueBytes -= entry.body.length;
      this.bodies--;
      entry.body = null;
    }
  }

  private dropPage(key: string, entry: PageEntry): void {
    this.pages.delete(key);
    this.pageRows -= entry.rows.length;
    entry.live = false;
    if (entry.values) {
      for (const value of entry.values.values()) {
        value.fill(0);
        this.valueBytes -= value.length;
      }
      entry.values = null;
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * Evicts one entry of `map` by second chance (CLOCK), a cheap approximation of least recently
 * used: from the oldest, an entry read since it was last passed is moved to the back with its
 * mark cleared, and the first unmarked one goes. A hit costs one flag, not a reordering, and a
 * hot secret survives a stream of cold reads (plain insertion order evicted it every
 * `maxEntries` reads). `added` (just stored, not yet read) is never the one evicted. Ends
 * within one pass: every entry passed loses its mark.
 */
function evict<E extends { hot: boolean }>(map: Map<string, E>, added: E, drop: (key: string, entry: E) => void): void {
  for (const [key, entry] of map) {
    if (entry === added) continue;
    if (!entry.hot) return drop(key, entry);
    entry.hot = false;
    map.delete(key);
    map.set(key, entry);
  }
}

/** Drops what a secret or namespace change makes stale; other kinds are not the read cache's business. */
export function applyChange(cache: SecretReadCache, event: ChangeEvent): void {
  if (event.kind === 'secret') cache.invalidate(event.namespace, event.path);
  else if (event.kind === 'namespace') cache.invalidateNamespace(event.namespace);
}
