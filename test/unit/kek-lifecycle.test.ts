// KEK lifecycle pieces that need no server: route templates and audit actions of the new
// routes, the lifecycle settings, and exact eviction from the KEK cache.
import { ConfigError, loadConfig } from '@coffer/server/config';
import { describeRequest, routeTemplate } from '@coffer/server/http/route-template';
import { KekCache } from '@coffer/server/keyring/kek-cache';

describe('KEK lifecycle routes', () => {
  it.each([
    ['GET', '/v1/namespaces/payments-prod/kek', '/v1/namespaces/:name/kek', 'namespace.kek.read'],
    ['POST', '/v1/namespaces/payments-prod/kek/rotate', '/v1/namespaces/:name/kek/rotate', 'namespace.kek.rotate'],
    ['POST', '/v1/namespaces/payments-prod/shred', '/v1/namespaces/:name/shred', 'namespace.shred.schedule'],
    ['DELETE', '/v1/namespaces/payments-prod/shred', '/v1/namespaces/:name/shred', 'namespace.shred.cancel'],
    ['PATCH', '/v1/namespaces/payments-prod', '/v1/namespaces/:name', 'namespace.update'],
    ['GET', '/v1/namespaces/payments-prod/other', 'unmatched', 'namespace.unknown'],
    ['GET', '/v1/namespaces/payments-prod/kek/rotate/x', 'unmatched', 'namespace.unknown'],
  ])('%s %s → template %s, action %s', (method, url, template, action) => {
    expect(routeTemplate(url)).toBe(template);
    expect(describeRequest(method, url)).toEqual({ action, namespace: 'payments-prod', path: null });
  });
});

describe('KEK lifecycle settings', () => {
  it('defaults: rotate well before 2^32 encryptions, reserve counts in blocks, run jobs', () => {
    const c = loadConfig({});
    expect(c.kekRotateAfterEncryptions).toBe(2 ** 31);
    expect(c.kekUsageReserveBlock).toBe(1000);
    expect(c.kekRewrapBatchSize).toBe(1000);
    expect(c.kekRewrapBatchDelayMs).toBe(0);
    expect(c.kekRunJobs).toBe(true);
  });

  it('reads COFFER_KEK_* variables', () => {
    const c = loadConfig({
      COFFER_KEK_ROTATE_AFTER_ENCRYPTIONS: '1000000',
      COFFER_KEK_USAGE_RESERVE_BLOCK: '10',
      COFFER_KEK_REWRAP_BATCH_SIZE: '50',
      COFFER_KEK_REWRAP_BATCH_DELAY_MS: '200',
      COFFER_KEK_JOB_INTERVAL_SECONDS: '5',
      COFFER_KEK_RUN_JOBS: 'false',
    });
    expect(c).toMatchObject({
      kekRotateAfterEncryptions: 1_000_000,
      kekUsageReserveBlock: 10,
      kekRewrapBatchSize: 50,
      kekRewrapBatchDelayMs: 200,
      kekJobIntervalSeconds: 5,
      kekRunJobs: false,
    });
  });

  it.each([
    [{ COFFER_KEK_ROTATE_AFTER_ENCRYPTIONS: String(2 ** 32 + 1) }, /kekRotateAfterEncryptions/],
    [{ COFFER_KEK_ROTATE_AFTER_ENCRYPTIONS: '5' }, /kekRotateAfterEncryptions/],
    [{ COFFER_KEK_ROTATE_AFTER_ENCRYPTIONS: '100', COFFER_KEK_USAGE_RESERVE_BLOCK: '100' }, /kekUsageReserveBlock must be smaller/],
    [{ COFFER_KEK_REWRAP_BATCH_SIZE: '0' }, /kekRewrapBatchSize/],
  ])('refuses %j', (env, problem) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(problem);
  });
});

describe('KEK cache eviction of one version', () => {
  it('zeroes exactly that version, not one whose number shares its prefix', () => {
    const cache = new KekCache(60_000, 10);
    const v1 = new Uint8Array(32).fill(1);
    const v10 = new Uint8Array(32).fill(10);
    cache.set('ns:1', v1);
    cache.set('ns:10', v10);
    cache.evict('ns:1');
    expect(v1.every((b) => b === 0)).toBe(true);
    expect(cache.get('ns:1')).toBeUndefined();
    expect(cache.get('ns:10')).toBe(v10);
    expect(v10[0]).toBe(10);
    cache.close();
  });
});
