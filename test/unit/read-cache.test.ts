// The secret read cache: bounded, invalidated by changes, and never re-filled with
// data a concurrent change has already invalidated.
import { SecretReadCache, applyChange, type CachedVersion } from '@coffer/server/secrets/read-cache';
import { parseChange } from '@coffer/server/cluster/events';
import { VerifiedTokenCache } from '@coffer/server/auth/verified-tokens';

/** Every byte 0: what a dropped value or body must be. */
const zeroed = (v: Uint8Array) => v.every((b) => b === 0);

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

  it('keeps a secret that is read through a stream of cold reads (second chance, not insertion order)', () => {
    const c = make(3);
    c.set('ns', 'hot', row(1), c.generation);
    for (let i = 0; i < 20; i++) {
      expect(c.get('ns', 'hot')?.version).toBe(1); // read between every cold one
      c.set('ns', `cold${i}`, row(1), c.generation); // each read once only, by nobody
      expect(c.size).toBe(Math.min(i + 2, 3));
    }
    // No longer read: once passed over, "hot" loses its mark and goes like any other, within a
    // bound's worth (3) of new entries after the one that passed it.
    for (const p of ['w', 'x', 'y', 'z']) c.set('ns', p, row(1), c.generation);
    expect(c.get('ns', 'hot')).toBeUndefined();
    expect(c.get('ns', 'z')).toBeDefined(); // just stored: never the one evicted
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

    it('keeps a folder page that is read while others come and go', () => {
      const c = make(6);
      c.setPage('ns', 'hot/', page(3), c.generation);
      for (let i = 0; i < 10; i++) {
        expect(c.getPage('ns', 'hot/')).toHaveLength(3);
        c.setPage('ns', `cold${i}/`, page(3), c.generation); // 6 versions fit: one cold page goes
      }
      expect(c.getPage('ns', 'cold9/')).toHaveLength(3);
      expect(c.getPage('ns', 'cold8/')).toBeUndefined();
      c.setPage('ns', 'last/', page(3), c.generation); // "hot/" was not read since it was last passed: now it goes
      expect(c.getPage('ns', 'hot/')).toBeUndefined();
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

  describe('response bodies of cached latest versions', () => {
    const body = (text = '{"data":{"v":"secret"}}') => new Uint8Array(Buffer.from(text));
    const make = (maxBytes = 1000, max = 10, ttl = 1000) => new SecretReadCache(max, ttl, () => now, maxBytes);
    /** A cache holding ns:a (version 1) with a body; a body for ns:b too, to show what a change leaves alone. */
    const warm = (maxBytes?: number) => {
      const c = make(maxBytes);
      const v = row(1);
      c.set('ns', 'a', v, c.generation);
      const b = body();
      c.setBody(c.get('ns', 'a')!, b);
      expect(c.getBody(v)).toBe(b);
      const other = row(1);
      c.set('ns', 'b', other, c.generation);
      const ob = body();
      c.setBody(other, ob);
      expect(c.heldValueBytes).toBe(b.length * 2);
      return { c, v, b, other, ob };
    };

    it('keeps a body while its entry lives; a change of that secret zeroes it, not its neighbour\'s', () => {
      const { c, v, b, other, ob } = warm();
      c.invalidate('ns', 'a'); // a write, delete or destroy here, or its NOTIFY from another server
      expect(c.getBody(v)).toBeUndefined();
      expect(zeroed(b)).toBe(true);
      expect(c.getBody(other)).toBe(ob);
      expect(zeroed(ob)).toBe(false);
      expect(c.heldValueBytes).toBe(ob.length);
    });

    it('zeroes bodies when the namespace changes (shred scheduled, KEK rotation, rewrap done, deletion)', () => {
      const { c, b, ob } = warm();
      c.invalidateNamespace('ns');
      expect(zeroed(b) && zeroed(ob)).toBe(true);
      expect(c.heldValueBytes).toBe(0);
    });

    it('zeroes bodies on reset (seal, change feed down) and close (stop), and keeps none while off', () => {
      const { c, v, b, ob } = warm();
      c.reset(false);
      expect(zeroed(b) && zeroed(ob)).toBe(true);
      expect(c.heldValueBytes).toBe(0);
      expect(c.keepsValues).toBe(false);
      c.set('ns', 'a', v, c.generation);
      const again = body();
      c.setBody(v, again);
      expect(c.getBody(v)).toBeUndefined();
      expect(zeroed(again)).toBe(true);
      const w = warm();
      w.c.close();
      expect(zeroed(w.b) && zeroed(w.ob)).toBe(true);
      expect(w.c.heldValueBytes).toBe(0);
    });

    it('refuses (and zeroes) a body for a version no longer the cached one, whenever it was decrypted', () => {
      const c = make();
      const v1 = row(1);
      c.set('ns', 'a', v1, c.generation); // a read caches version 1 and starts decrypting…
      c.invalidate('ns', 'a'); // …a write commits…
      const v2 = row(2);
      c.set('ns', 'a', v2, c.generation); // …another read caches version 2
      const stale = body('{"v":1}');
      c.setBody(v1, stale);
      expect(zeroed(stale)).toBe(true);
      expect(c.getBody(v2)).toBeUndefined();
      // A version read across a change was never cached: no body for it either.
      const generation = c.generation;
      c.invalidate('ns', 'a');
      const v3 = row(3);
      c.set('ns', 'a', v3, generation);
      const never = body();
      c.setBody(v3, never);
      expect(zeroed(never)).toBe(true);
      expect(c.heldValueBytes).toBe(0);
    });

    it('zeroes the body of an entry replaced, passed by for min_version, evicted or expired', () => {
      let w = warm();
      w.c.set('ns', 'a', row(1), w.c.generation); // the same secret read again from the database
      expect(zeroed(w.b)).toBe(true);
      w = warm();
      expect(w.c.get('ns', 'a', 2)).toBeUndefined(); // a reader who has seen version 2
      expect(zeroed(w.b)).toBe(true);
      const c = make(1000, 1);
      const v = row(1);
      c.set('ns', 'a', v, c.generation);
      const b = body();
      c.setBody(v, b);
      c.set('ns', 'z', row(1), c.generation); // bound of 1: ns:a goes
      expect(zeroed(b)).toBe(true);
      expect(c.heldValueBytes).toBe(0);
      w = warm();
      now += 1001;
      expect(w.c.getBody(w.v)).toBeUndefined();
      w.c.sweep(); // the timer's job: no request needs to come by
      expect(zeroed(w.b) && zeroed(w.ob)).toBe(true);
      expect(w.c.heldValueBytes).toBe(0);
    });

    it('shares the byte bound with page values, none kept at 0', () => {
      const c = make(30);
      const v = row(1);
      c.set('ns', 'a', v, c.generation);
      const rows = [{ ...row(1), path: 'f/x' }];
      c.setPage('ns', 'f/', rows, c.generation);
      const pv = body('{"page":"value"}'); // 16 bytes
      c.setValue(rows[0]!, pv);
      const big = body('{"body":"valu"}'); // 15: over the 30 with the page's 16
      c.setBody(v, big);
      expect(c.getBody(v)).toBeUndefined();
      expect(zeroed(big)).toBe(true);
      const fits = body('{"b":"v"}');
      c.setBody(v, fits);
      expect(c.getBody(v)).toBe(fits);
      expect(c.heldValueBytes).toBe(16 + fits.length);
      const off = make(0);
      off.set('ns', 'a', v, off.generation);
      expect(off.keepsValues).toBe(false);
      const none = body();
      off.setBody(v, none);
      expect(off.getBody(v)).toBeUndefined();
      expect(zeroed(none)).toBe(true);
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
