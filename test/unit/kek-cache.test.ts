// The KEK cache is bounded in size and time, and zeroes every key it lets go of.
import { KekCache } from '@coffer/server/keyring/kek-cache';

const key = (fill: number) => new Uint8Array(32).fill(fill);

describe('KekCache', () => {
  let now = 1_000;
  const clock = () => now;
  const caches: KekCache[] = [];
  const make = (ttl: number, max: number) => {
    const c = new KekCache(ttl, max, clock);
    caches.push(c);
    return c;
  };
  afterAll(() => caches.forEach((c) => c.close()));

  it('returns a cached key until its TTL passes, then zeroes it', () => {
    const cache = make(100, 10);
    const k = key(7);
    cache.set('ns:1', k);
    expect(cache.get('ns:1')).toBe(k);
    now += 101;
    expect(cache.get('ns:1')).toBeUndefined();
    expect(k.every((b) => b === 0)).toBe(true);
  });

  it('extends the TTL on use', () => {
    const cache = make(100, 10);
    cache.set('a', key(1));
    now += 60;
    expect(cache.get('a')).toBeDefined();
    now += 60;
    expect(cache.get('a')).toBeDefined();
  });

  it('evicts the least recently used key past the bound and zeroes it', () => {
    const cache = make(1_000, 2);
    const a = key(1);
    const b = key(2);
    const c = key(3);
    cache.set('a', a);
    cache.set('b', b);
    cache.get('a');
    cache.set('c', c);
    expect(cache.get('b')).toBeUndefined();
    expect(b.every((x) => x === 0)).toBe(true);
    expect(cache.get('a')).toBe(a);
    expect(cache.get('c')).toBe(c);
    expect(cache.stats().size).toBe(2);
  });

  it('sweep zeroes idle expired keys without a lookup', () => {
    const cache = make(100, 10);
    const k = key(9);
    cache.set('x', k);
    now += 200;
    cache.sweep();
    expect(k.every((b) => b === 0)).toBe(true);
    expect(cache.stats().size).toBe(0);
  });

  it('evicts by namespace prefix and clears everything on close', () => {
    const cache = make(1_000, 10);
    const a1 = key(1);
    const a2 = key(2);
    const b1 = key(3);
    cache.set('nsA:1', a1);
    cache.set('nsA:2', a2);
    cache.set('nsB:1', b1);
    cache.evictPrefix('nsA:');
    expect([a1, a2].every((k) => k.every((x) => x === 0))).toBe(true);
    expect(cache.get('nsB:1')).toBe(b1);
    cache.close();
    expect(b1.every((x) => x === 0)).toBe(true);
  });

  it('counts hits and misses', () => {
    const cache = make(1_000, 10);
    cache.set('a', key(1));
    cache.get('a');
    cache.get('b');
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1 });
  });
});
