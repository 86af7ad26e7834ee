// The KMS key cache: bounded in keys, versions per key and time; every version it lets go of is
// zeroed; change events drop exactly what they name; a load that raced an invalidation is not cached.
import { changeEvents } from '@coffer/server/cluster/events';
import { KmsKeyCache, MAX_CACHED_VERSIONS_PER_KEY } from '@coffer/server/kms/named-keys/key-cache';
import type { KmsKeyRow } from '@coffer/server/storage/repos/kms-keys';

const NS_ID = '0b5f3c1e-6f1e-4c43-9d1a-8d5a3f0e2b7c';
const rowOf = (id: string, name: string, namespaceId = NS_ID): KmsKeyRow => ({
  id,
  namespace_id: namespaceId,
  name,
  type: 'aes256-gcm',
  latest_version: 1,
  min_decryption_version: 1,
  min_encryption_version: 0,
  exportable: false,
  export_locked: false,
  deletion_allowed: false,
  auto_rotate_period_seconds: null,
  origin: 'internal',
  hsm: false,
  created_at: new Date(0),
  updated_at: new Date(0),
});
const isZero = (b: Uint8Array) => b.every((x) => x === 0);

describe('KmsKeyCache', () => {
  let now = 1_000;
  const caches: KmsKeyCache[] = [];
  const make = (max = 10, ttl = 100, enabled = true) => {
    const c = new KmsKeyCache(max, ttl, enabled, () => now);
    caches.push(c);
    return c;
  };
  afterAll(() => caches.forEach((c) => c.close()));

  /** Caches key `name` (id `id`) with version 1, returning the cache's own buffer. */
  function fill(cache: KmsKeyCache, ns: string, name: string, id: string, namespaceId = NS_ID): Uint8Array {
    cache.putKey(ns, name, namespaceId, rowOf(id, name, namespaceId), cache.generation);
    const mine = new Uint8Array(32).fill(7);
    const stored = cache.putVersion(ns, name, id, 1, mine, cache.generation)!;
    // The cache keeps a copy: the caller zeroing its own leaves the cached one intact.
    mine.fill(0);
    expect(stored.material).toEqual(new Uint8Array(32).fill(7));
    return stored.material;
  }

  it('serves rows and versions until the TTL (from insertion) passes, then zeroes them', () => {
    const cache = make();
    const held = fill(cache, 'apps', 'k', 'id-k');
    now += 60;
    expect(cache.key('apps', 'k')?.row.id).toBe('id-k');
    expect(cache.version('apps', 'k', 'id-k', 1)?.material).toBe(held);
    // A key re-created under the same name (another id) never gets the old one's versions.
    expect(cache.version('apps', 'k', 'other-id', 1)).toBeUndefined();
    now += 60; // use did not extend it
    expect(cache.key('apps', 'k')).toBeUndefined();
    expect(isZero(held)).toBe(true);
  });

  it('evicts the least recently used key and bounds the versions of one key, zeroing both', () => {
    const cache = make(2, 10_000);
    const first = fill(cache, 'apps', 'a', 'id-a');
    fill(cache, 'apps', 'b', 'id-b');
    cache.key('apps', 'a');
    fill(cache, 'apps', 'c', 'id-c');
    expect(cache.key('apps', 'b')).toBeUndefined();
    expect(cache.key('apps', 'a')).toBeDefined();
    expect(isZero(first)).toBe(false);
    const kept: Uint8Array[] = [];
    for (let v = 2; v <= MAX_CACHED_VERSIONS_PER_KEY + 1; v++) kept.push(cache.putVersion('apps', 'a', 'id-a', v, new Uint8Array(4).fill(v), cache.generation)!.material);
    expect(isZero(first)).toBe(true); // version 1 was the least recently used
    expect(kept.every((m) => !isZero(m))).toBe(true);
  });

  it('kms-key, namespace and namespace-keys events drop what they name and nothing else', () => {
    const cache = make(10, 10_000);
    const a = fill(cache, 'apps', 'a', 'id-a');
    const b = fill(cache, 'apps', 'b', 'id-b');
    const c = fill(cache, 'other', 'c', 'id-c', 'ns-other');
    cache.apply(changeEvents.kmsKey(NS_ID, 'id-a'));
    expect([isZero(a), isZero(b), isZero(c)]).toEqual([true, false, false]);
    expect(cache.key('apps', 'a')).toBeUndefined();
    cache.apply(changeEvents.namespace('apps'));
    expect([isZero(b), isZero(c)]).toEqual([true, false]);
    cache.apply(changeEvents.namespaceKeys('ns-other'));
    expect(isZero(c)).toBe(true);
    expect(cache.stats().size).toBe(0);
  });

  it('does not cache a load that started before an invalidation', () => {
    const cache = make(10, 10_000);
    const before = cache.generation;
    cache.invalidateKey(NS_ID, 'id-x');
    cache.putKey('apps', 'x', NS_ID, rowOf('id-x', 'x'), before);
    expect(cache.key('apps', 'x')).toBeUndefined();
    fill(cache, 'apps', 'x', 'id-x');
    const stale = cache.generation;
    cache.invalidateKey(NS_ID, 'id-unrelated');
    expect(cache.putVersion('apps', 'x', 'id-x', 2, new Uint8Array(4), stale)).toBeUndefined();
  });

  it('while off (feed down, or max 0) nothing is cached; turning off zeroes everything', () => {
    const cache = make(10, 10_000);
    const held = fill(cache, 'apps', 'a', 'id-a');
    cache.reset(false);
    expect(isZero(held)).toBe(true);
    cache.putKey('apps', 'a', NS_ID, rowOf('id-a', 'a'), cache.generation);
    expect(cache.key('apps', 'a')).toBeUndefined();
    cache.reset(true);
    fill(cache, 'apps', 'a', 'id-a');
    expect(cache.key('apps', 'a')).toBeDefined();
    const off = make(0, 10_000, true);
    off.putKey('apps', 'a', NS_ID, rowOf('id-a', 'a'), off.generation);
    expect(off.key('apps', 'a')).toBeUndefined();
  });
});
