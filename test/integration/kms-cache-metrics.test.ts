// The named-key cache's Prometheus metrics (issue 14): entries, hits, misses and evictions by
// reason move with real KMS requests on a real server whose cache holds 2 keys for 1 second, and
// the totals keep counting across seal and unseal (each unseal builds a new cache).
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, initAndUnseal, startTestServer, unsealWith, type TestStore } from '../helpers/server.js';

function metric(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('named-key cache metrics', () => {
  let store: TestStore;
  let server: RunningServer;
  let token: string;
  let shares: string[];
  const call = (method: string, path: string, body?: unknown) => api(server.url, method, path, { token, ...(body === undefined ? {} : { body }) });
  const scrape = async () => {
    const res = await call('GET', '/v1/sys/metrics');
    expect(res.status).toBe(200);
    return res.text;
  };
  const encrypt = async (name: string) => expect((await call('POST', `/v1/kms/m/encrypt/${name}`, { plaintext: 'aGk=' })).status).toBe(200);
  /** Runs `step` until `done(scrape)` holds (the change feed's notices of the key creations may empty the cache meanwhile). */
  async function until(step: () => Promise<void>, done: (text: string) => boolean): Promise<string> {
    let text = await scrape();
    for (const deadline = Date.now() + 30_000; !done(text) && Date.now() < deadline; ) {
      await step();
      text = await scrape();
    }
    expect(done(text)).toBe(true);
    return text;
  }

  beforeAll(async () => {
    store = await createStore('pglite');
    server = await startTestServer(store, { kmsKeyCacheMaxEntries: 2, kmsKeyCacheTtlSeconds: 1 });
    ({ token, shares } = await initAndUnseal(server.url, 3, 2));
    expect((await call('POST', '/v1/namespaces', { name: 'm' })).status).toBe(201);
    for (const name of ['a', 'b', 'c']) expect((await call('POST', `/v1/kms/m/keys/${name}`, { type: 'aes256-gcm' })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('count hits, misses and entries', async () => {
    const before = await scrape();
    expect(metric(before, 'coffer_kms_key_cache_entries')).toBe(0);
    const hits0 = metric(before, 'coffer_kms_key_cache_hits_total')!;
    const misses0 = metric(before, 'coffer_kms_key_cache_misses_total')!;
    expect(hits0).toBeGreaterThanOrEqual(0);
    const text = await until(
      async () => {
        await encrypt('a');
        await encrypt('a');
      },
      (t) => metric(t, 'coffer_kms_key_cache_hits_total')! > hits0 && metric(t, 'coffer_kms_key_cache_misses_total')! > misses0,
    );
    expect(metric(text, 'coffer_kms_key_cache_entries')).toBeGreaterThanOrEqual(0);
    expect(metric(text, 'coffer_kms_key_cache_entries')).toBeLessThanOrEqual(2);
  });

  it('count evictions by capacity (3 keys in a cache of 2) and by expiry (1 s TTL)', async () => {
    await until(
      async () => {
        for (const name of ['a', 'b', 'c']) await encrypt(name);
      },
      (t) => metric(t, 'coffer_kms_key_cache_evictions_total', 'reason="capacity"')! >= 1,
    );
    // Left alone past its TTL, what is cached expires (the sweeper or the next lookup drops it).
    await until(
      async () => {
        await encrypt('a');
        await new Promise((resolve) => setTimeout(resolve, 1500));
      },
      (t) => metric(t, 'coffer_kms_key_cache_evictions_total', 'reason="expired"')! >= 1,
    );
  });

  it('keep the totals across seal and unseal; the new cache starts empty', async () => {
    await encrypt('a');
    const before = await scrape();
    const totals = ['coffer_kms_key_cache_hits_total', 'coffer_kms_key_cache_misses_total'].map((n) => [n, metric(before, n)!] as const);
    const capacity = metric(before, 'coffer_kms_key_cache_evictions_total', 'reason="capacity"')!;
    expect((await call('POST', '/v1/sys/seal')).status).toBe(200);
    await unsealWith(server.url, shares.slice(0, 2));
    const after = await scrape();
    for (const [name, value] of totals) expect(metric(after, name)).toBeGreaterThanOrEqual(value);
    expect(metric(after, 'coffer_kms_key_cache_evictions_total', 'reason="capacity"')).toBeGreaterThanOrEqual(capacity);
    expect(metric(after, 'coffer_kms_key_cache_entries')).toBe(0);
    // And they move on from there.
    const misses = metric(after, 'coffer_kms_key_cache_misses_total')!;
    await until(() => encrypt('b'), (t) => metric(t, 'coffer_kms_key_cache_misses_total')! > misses);
  });
});
