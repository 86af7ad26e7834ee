// The secret read cache: bounded, invalidated by changes, and never re-filled with
// data a concurrent change has already invalidated.
import { SecretReadCache, applyChange, type CachedVersion } from '@coffer/server/secrets/read-cache';
import { parseChange } from '@coffer/server/cluster/events';
import { VerifiedTokenCache } from '@coffer/server/auth/verified-tokens';

const row = (version: number): CachedVersion => ({
  namespace_id: 'n',
  secret_id: 's',
  version,
  type: 'generic',
  metadata: {},
  kek_version: 1,
  wrapped_dek: new Uint8Array(1),
  ciphertext: new Uint8Array(1),
  created_at: new Date(0),
  deleted_at: null,
  destroyed_at: null,
});

describe('SecretReadCache', () => {
  let now = 0;
  const make = (max = 10, ttl = 1000) => new SecretReadCache(max, ttl, () => now);

  it('returns what was stored until invalidated', () => {
    const c = make();
    c.set('ns', 'a', row(1), c.generation);
    expect(c.get('ns', 'a')?.version).toBe(1);
    c.invalidate('ns', 'a');
    expect(c.get('ns', 'a')).toBeUndefined();
  });

  it('does not store a row read before a concurrent invalidation', () => {
    const c = make();
    const generation = c.generation; // a reader starts its query…
    c.invalidate('ns', 'a'); // …a write commits meanwhile…
    c.set('ns', 'a', row(1), generation); // …the stale row must not be cached
    expect(c.get('ns', 'a')).toBeUndefined();
  });

  it('expires entries after the TTL', () => {
    const c = make(10, 100);
    c.set('ns', 'a', row(1), c.generation);
    now += 101;
    expect(c.get('ns', 'a')).toBeUndefined();
  });

  it('is bounded, evicting the oldest entry', () => {
    const c = make(2);
    c.set('ns', 'a', row(1), c.generation);
    c.set('ns', 'b', row(1), c.generation);
    c.set('ns', 'c', row(1), c.generation);
    expect(c.size).toBe(2);
    expect(c.get('ns', 'a')).toBeUndefined();
  });

  describe('folder pages', () => {
    const page = (n: number) => Array.from({ length: n }, (_, i) => ({ ...row(1), path: `f/s${i}` }));

    it('returns a page until any change in its namespace, not in others', () => {
      const c = make(100);
      c.setPage('ns', 'f/', page(3), c.generation);
      c.setPage('other', 'f/', page(3), c.generation);
      expect(c.getPage('ns', 'f/')).toHaveLength(3);
      c.invalidate('ns', 'elsewhere/unrelated'); // a new secret may belong to any folder page
      expect(c.getPage('ns', 'f/')).toBeUndefined();
      expect(c.getPage('other', 'f/')).toHaveLength(3);
      c.invalidateNamespace('other');
      expect(c.getPage('other', 'f/')).toBeUndefined();
    });

    it('does not store a page read before a concurrent invalidation', () => {
      const c = make(100);
      const generation = c.generation;
      c.invalidate('ns', 'f/s1');
      c.setPage('ns', 'f/', page(3), generation);
      expect(c.getPage('ns', 'f/')).toBeUndefined();
    });

    it('expires pages, keeps none while off, and counts their versions against the bound', () => {
      const c = make(5, 100);
      c.setPage('ns', 'a/', page(3), c.generation);
      c.setPage('ns', 'b/', page(3), c.generation); // 6 versions > 5: the oldest page goes
      expect(c.getPage('ns', 'a/')).toBeUndefined();
      expect(c.getPage('ns', 'b/')).toHaveLength(3);
      c.setPage('ns', 'big/', page(6), c.generation); // larger than the bound: not kept
      expect(c.getPage('ns', 'big/')).toBeUndefined();
      expect(c.getPage('ns', 'b/')).toHaveLength(3);
      now += 101;
      expect(c.getPage('ns', 'b/')).toBeUndefined();
      c.reset(false);
      c.setPage('ns', 'b/', page(1), c.generation);
      expect(c.getPage('ns', 'b/')).toBeUndefined();
    });
  });

  describe('decrypted values of folder pages', () => {
    const page = (n: number) => Array.from({ length: n }, (_, i) => ({ ...row(1), path: `f/s${i}` }));
    const value = (text: string) => new Uint8Array(Buffer.from(text));
    const zeroed = (v: Uint8Array) => v.every((b) => b === 0);
    const make = (maxBytes = 1000, ttl = 1000) => new SecretReadCache(100, ttl, () => now, maxBytes);
    /** A cache holding page f/ of `ns` with a value for its first row. */
    const warm = (maxBytes?: number) => {
      const c = make(maxBytes);
      const rows = page(3);
      c.setPage('ns', 'f/', rows, c.generation);
      const v = value('{"secret":1}');
      c.setValue(rows[0]!, v);
      expect(c.getValue(rows[0]!)).toBe(v);
      expect(c.heldValueBytes).toBe(v.length);
      return { c, rows, v };
    };

    it('keeps a value while its page lives; a change in the namespace zeroes it, a change elsewhere does not', () => {
      const { c, rows, v } = warm();
      c.invalidate('other', 'x');
      expect(c.getValue(rows[0]!)).toBe(v);
      c.invalidate('ns', 'f/s2'); // a write, delete or destroy here, or its NOTIFY from another server
      expect(c.getValue(rows[0]!)).toBeUndefined();
      expect(zeroed(v)).toBe(true);
      expect(c.heldValueBytes).toBe(0);
    });

    it('zeroes values when the namespace changes (shred scheduled, KEKs, deletion)', () => {
      const { c, rows, v } = warm();
      c.invalidateNamespace('ns');
      expect(c.getValue(rows[0]!)).toBeUndefined();
      expect(zeroed(v)).toBe(true);
    });

    it('zeroes values on reset (seal, change feed down) and keeps none while off', () => {
      const { c, rows, v } = warm();
      c.reset(false);
      expect(zeroed(v)).toBe(true);
      expect(c.heldValueBytes).toBe(0);
      c.setPage('ns', 'f/', rows, c.generation);
      const again = value('{"secret":1}');
      c.setValue(rows[0]!, again);
      expect(c.getValue(rows[0]!)).toBeUndefined();
      expect(zeroed(again)).toBe(true);
    });

    it('refuses (and zeroes) a value for a row whose page is gone, whenever it was decrypted', () => {
      const c = make();
      const rows = page(2);
      c.setPage('ns', 'f/', rows, c.generation); // a bulk read takes the page and starts decrypting…
      c.invalidate('other', 'x'); // …a change elsewhere leaves the page (and so its rows) current…
      const kept = value('{"a":1}');
      c.setValue(rows[0]!, kept);
      expect(c.getValue(rows[0]!)).toBe(kept);
      c.invalidate('ns', 'f/s9'); // …one in its namespace drops it: its rows take no value any more
      const orphan = value('{"a":1}');
      c.setValue(rows[1]!, orphan);
      expect(c.getValue(rows[1]!)).toBeUndefined();
      expect(zeroed(orphan)).toBe(true);
      expect(zeroed(kept)).toBe(true);
      // Rows whose page was never kept (filled across a change) take none either.
      const stale = page(1);
      const generation = c.generation;
      c.invalidate('ns', 'f/s0');
      c.setPage('ns', 'f/', stale, generation);
      const never = value('{"a":1}');
      c.setValue(stale[0]!, never);
      expect(c.getValue(stale[0]!)).toBeUndefined();
      expect(zeroed(never)).toBe(true);
      expect(c.heldValueBytes).toBe(0);
    });

    it('zeroes values of a page evicted, replaced or expired', () => {
      const { c, rows, v } = warm();
      c.setPage('ns', 'f/', page(3), c.generation); // the same query answered again
      expect(zeroed(v)).toBe(true);
      expect(c.getValue(rows[0]!)).toBeUndefined();
      const w = warm();
      now += 1001;
      expect(w.c.getValue(w.rows[0]!)).toBeUndefined();
      w.c.sweep(); // the timer's job: no request needs to come by
      expect(zeroed(w.v)).toBe(true);
      expect(w.c.heldValueBytes).toBe(0);
    });

    it('zeroes values when closed (server stop) and keeps none after', () => {
      const { c, rows, v } = warm();
      c.close();
      expect(zeroed(v)).toBe(true);
      c.setPage('ns', 'f/', rows, c.generation);
      expect(c.getPage('ns', 'f/')).toBeUndefined();
    });

    it('keeps at most its byte bound, none at 0', () => {
      const { c, rows } = warm(20); // 12 bytes held
      const big = value('{"b":"xxxxxxx"}');
      c.setValue(rows[1]!, big);
      expect(c.getValue(rows[1]!)).toBeUndefined();
      expect(zeroed(big)).toBe(true);
      const off = make(0);
      const r = page(1);
      off.setPage('ns', 'f/', r, off.generation);
      const v = value('{}');
      off.setValue(r[0]!, v);
      expect(off.getValue(r[0]!)).toBeUndefined();
      expect(zeroed(v)).toBe(true);
    });
  });

  it('invalidates a whole namespace, not its neighbours', () => {
    const c = make();
    c.set('ns', 'a', row(1), c.generation);
    c.set('ns', 'b/c', row(1), c.generation);
    c.set('ns2', 'a', row(1), c.generation);
    c.invalidateNamespace('ns');
    expect(c.get('ns', 'a')).toBeUndefined();
    expect(c.get('ns', 'b/c')).toBeUndefined();
    expect(c.get('ns2', 'a')).toBeDefined();
  });

  it('stays off while the change feed is down, and when sized 0', () => {
    const c = make();
    c.set('ns', 'a', row(1), c.generation);
    c.reset(false);
    expect(c.get('ns', 'a')).toBeUndefined();
    c.set('ns', 'a', row(1), c.generation);
    expect(c.get('ns', 'a')).toBeUndefined();
    c.reset(true);
    c.set('ns', 'a', row(1), c.generation);
    expect(c.get('ns', 'a')).toBeDefined();
    const off = make(0);
    off.reset(true);
    off.set('ns', 'a', row(1), off.generation);
    expect(off.get('ns', 'a')).toBeUndefined();
  });

  it('applies change events from other servers and ignores foreign payloads', () => {
    const c = make();
    c.set('ns', 'a', row(1), c.generation);
    expect(parseChange('not json')).toBeNull();
    expect(parseChange('{"kind":"secret","namespace":1}')).toBeNull();
    applyChange(c, parseChange(JSON.stringify({ kind: 'secret', namespace: 'ns', path: 'a' }))!);
    expect(c.get('ns', 'a')).toBeUndefined();
  });
});

describe('VerifiedTokenCache', () => {
  let now = 0;
  const revoked = new Set<string>();
  const principal = (accessor: string, expiresAt?: number) => ({ accessor, identity: 'root', displayName: 'root', policies: ['root'], expiresAt });

  it('remembers a verified token until its expiry', () => {
    const c = new VerifiedTokenCache(10, (a) => revoked.has(a), () => now);
    c.set('h1', principal('a1', 500));
    expect(c.get('h1')?.accessor).toBe('a1');
    now = 500;
    expect(c.get('h1')).toBeUndefined();
  });

  it('holds a non-expiring token for at most a minute', () => {
    now = 0;
    const c = new VerifiedTokenCache(10, (a) => revoked.has(a), () => now);
    c.set('h', principal('a'));
    now = 59_999;
    expect(c.get('h')).toBeDefined();
    now = 60_001;
    expect(c.get('h')).toBeUndefined();
  });

  it('refuses a hit once the accessor is revoked', () => {
    now = 0;
    const c = new VerifiedTokenCache(10, (a) => revoked.has(a), () => now);
    c.set('h', principal('gone'));
    revoked.add('gone');
    expect(c.get('h')).toBeUndefined();
  });

  it('is bounded and can be cleared', () => {
    now = 0;
    const c = new VerifiedTokenCache(1, () => false, () => now);
    c.set('x', principal('x'));
    c.set('y', principal('y'));
    expect(c.get('x')).toBeUndefined();
    expect(c.get('y')).toBeDefined();
    c.clear();
    expect(c.get('y')).toBeUndefined();
  });
});
