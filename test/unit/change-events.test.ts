// The change feed's events (cluster/events.ts) and their dispatch (cluster/dispatch.ts): every
// kind round-trips through its NOTIFY payload and reaches its handler; a payload that is not an
// event this server understands is reported and ignored, and never throws.
import {
  CHANGE_KINDS,
  changeEvents,
  encodeChange,
  parseChange,
  parseChangeEvent,
  type ChangeEvent,
  type ChangeEventOf,
  type ChangeKind,
} from '@coffer/server/cluster/events';
import { dispatchChanges, type ChangeTargets } from '@coffer/server/cluster/dispatch';
import { SecretReadCache, type CachedVersion } from '@coffer/server/secrets/read-cache';
import { LocalChangeFeed } from '@coffer/server/storage/change-feed';

/** One sample per kind: a kind added to the union without one here does not compile. */
const SAMPLES: { [K in ChangeKind]: ChangeEventOf<K> } = {
  secret: changeEvents.secret('payments-prod', 'db/password'),
  namespace: changeEvents.namespace('payments-prod'),
  'namespace-keys': changeEvents.namespaceKeys('0b5f3c1e-6f1e-4c43-9d1a-8d5a3f0e2b7c'),
  policy: changeEvents.policy('readers'),
  tokens: changeEvents.tokens(),
  root: changeEvents.root(3),
  init: changeEvents.init(),
};

const MALFORMED = [
  'not json',
  '',
  'null',
  '[]',
  '"secret"',
  '42',
  '{}',
  '{"kind":1}',
  '{"kind":null}',
  '{"kind":"secret","namespace":1,"path":"a"}',
  '{"kind":"secret","namespace":"ns"}',
  '{"kind":"secret","namespace":"","path":"a"}',
  '{"kind":"namespace"}',
  '{"kind":"namespace-keys","namespaceId":7}',
  '{"kind":"policy"}',
  '{"kind":"policy","name":["a"]}',
  '{"kind":"root"}',
  '{"kind":"root","version":"2"}',
  '{"kind":"root","version":0}',
  '{"kind":"root","version":1.5}',
];
const UNKNOWN_KIND = ['{"kind":"lease"}', '{"kind":"toString"}', '{"kind":"__proto__"}', '{"kind":"constructor","x":1}'];

describe('change-feed events', () => {
  it('lists every kind once', () => {
    expect([...CHANGE_KINDS].sort()).toEqual(Object.keys(SAMPLES).sort());
  });

  it.each(CHANGE_KINDS)('%s round-trips through its payload', (kind) => {
    const event: ChangeEvent = SAMPLES[kind];
    expect(event.kind).toBe(kind);
    const payload = encodeChange(event);
    expect(parseChangeEvent(payload)).toEqual({ ok: true, event });
    expect(parseChange(payload)).toEqual(event);
  });

  it('keeps the payloads of today (servers of the previous release read them)', () => {
    expect(encodeChange(SAMPLES.secret)).toBe('{"kind":"secret","namespace":"payments-prod","path":"db/password"}');
    expect(encodeChange(SAMPLES.policy)).toBe('{"kind":"policy","name":"readers"}');
    expect(encodeChange(SAMPLES.tokens)).toBe('{"kind":"tokens"}');
    expect(encodeChange(SAMPLES.root)).toBe('{"kind":"root","version":3}');
  });

  it.each(MALFORMED)('ignores malformed payload %j', (payload) => {
    expect(parseChangeEvent(payload)).toMatchObject({ ok: false, problem: 'malformed' });
    expect(parseChange(payload)).toBeNull();
  });

  it.each(UNKNOWN_KIND)('ignores a kind it does not know: %j', (payload) => {
    expect(parseChangeEvent(payload)).toMatchObject({ ok: false, problem: 'unknown-kind' });
  });

  it('drops fields a newer server adds', () => {
    expect(parseChange('{"kind":"namespace","namespace":"ns","reason":"shred"}')).toEqual({ kind: 'namespace', namespace: 'ns' });
  });
});

describe('change-feed dispatch', () => {
  const row: CachedVersion = {
    namespace_id: 'n',
    secret_id: 's',
    version: 1,
    type: 'generic',
    metadata: {},
    kek_version: 1,
    wrapped_dek: new Uint8Array(1),
    ciphertext: new Uint8Array(1),
    created_at: new Date(0),
    deleted_at: null,
    destroyed_at: null,
  };

  function setup(opts: { sealed?: boolean; evictThrows?: boolean } = {}) {
    const calls: string[] = [];
    const ignored: Array<[string, string | undefined]> = [];
    const errors: string[] = [];
    const feed = new LocalChangeFeed();
    const readCache = new SecretReadCache(100, 60_000);
    // Recording stand-ins for the unsealed services: the dispatch only calls them.
    const targets: ChangeTargets = {
      keyring: {
        evictNamespace: (id) => {
          if (opts.evictThrows) throw new Error('boom');
          calls.push(`evict ${id}`);
        },
      },
      policies: {
        loadAll: async () => void calls.push('policies.loadAll'),
        reload: async (name) => void calls.push(`policies.reload ${name}`),
      },
      tokens: { load: async () => void calls.push('tokens.load') },
    };
    dispatchChanges(feed, {
      readCache,
      unsealed: () => (opts.sealed ? null : targets),
      followRoot: async () => void calls.push('followRoot'),
      followInit: async () => void calls.push('followInit'),
      onError: (what) => errors.push(what),
      onIgnored: (problem, kind) => ignored.push([problem, kind]),
    });
    return { feed, readCache, calls, ignored, errors, emit: (payload: string) => feed.events.emit('change', payload) };
  }

  it('hands every kind to its handler', async () => {
    const { readCache, calls, ignored, emit } = setup();
    readCache.set('payments-prod', 'db/password', row, readCache.generation);
    readCache.set('payments-prod', 'other', row, readCache.generation);
    readCache.set('elsewhere', 'x', row, readCache.generation);
    emit(encodeChange(SAMPLES.secret));
    expect(readCache.get('payments-prod', 'db/password')).toBeUndefined();
    expect(readCache.get('payments-prod', 'other')).toBeDefined();
    emit(encodeChange(SAMPLES.namespace));
    expect(readCache.get('payments-prod', 'other')).toBeUndefined();
    expect(readCache.get('elsewhere', 'x')).toBeDefined();
    for (const kind of ['namespace-keys', 'policy', 'tokens', 'root', 'init'] as const) emit(encodeChange(SAMPLES[kind]));
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([`evict ${SAMPLES['namespace-keys'].namespaceId}`, 'policies.reload readers', 'tokens.load', 'followRoot', 'followInit']);
    expect(ignored).toEqual([]);
  });

  it('reports and ignores what it does not understand, without throwing or touching anything', async () => {
    const { readCache, calls, ignored, errors, emit } = setup();
    readCache.set('ns', 'a', row, readCache.generation);
    for (const payload of [...MALFORMED, ...UNKNOWN_KIND]) expect(() => emit(payload)).not.toThrow();
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([]);
    expect(errors).toEqual([]);
    expect(readCache.get('ns', 'a')).toBeDefined();
    expect(ignored.filter(([p]) => p === 'malformed')).toHaveLength(MALFORMED.length);
    expect(ignored.filter(([p]) => p === 'unknown-kind').map(([, k]) => k)).toEqual(['lease', 'toString', '__proto__', 'constructor']);
  });

  it('a handler that throws is reported, not thrown into the feed', () => {
    const { errors, emit } = setup({ evictThrows: true });
    expect(() => emit(encodeChange(SAMPLES['namespace-keys']))).not.toThrow();
    expect(errors).toEqual(['handling a namespace-keys change failed']);
  });

  it('while sealed, service events wait for the reload at unseal', async () => {
    const { calls, emit } = setup({ sealed: true });
    for (const kind of ['namespace-keys', 'policy', 'tokens'] as const) emit(encodeChange(SAMPLES[kind]));
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([]);
  });
});
