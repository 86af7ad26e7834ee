// client.audit over a scripted fetch: the query strings it builds, paging, and retries.
// (test/e2e/cli-audit covers it against the real server.)

import { CofferClient, type AuditEntry, type FetchFn } from '@coffer/sdk';
import { failure, json, scripted, type Call } from '../helpers/fetch.js';

const client = (fetch: FetchFn) => new CofferClient({ address: 'http://127.0.0.1:8200', token: 'tok', fetch, retryBaseDelayMs: 0 });
const request = (c: Call) => `${c.method} ${c.url.pathname}${c.url.search}`;
const page = (seqs: number[], next: number | null) => json(200, { entries: seqs.map((seq) => ({ seq }) as AuditEntry), next_cursor: next });
const sealed = () => json(503, { error: { code: 'sealed', message: 'Coffer is sealed', requestId: 'r' } });

describe('client.audit.search', () => {
  it('sends no parameters for an empty query (the server defaults: newest first, 100)', async () => {
    const { fetch, calls } = scripted(page([], null));
    expect(await client(fetch).audit.search()).toEqual({ entries: [], next_cursor: null });
    expect(calls.map(request)).toEqual(['GET /v1/sys/audit']);
  });

  it('puts every filter in the query string, encoded, and Dates as ISO timestamps', async () => {
    const { fetch, calls } = scripted(page([], null));
    await client(fetch).audit.search({
      identity: 'ci bot&co',
      namespace: 'payments-prod',
      path: 'db/',
      action: 'secret.write',
      outcome: 'denied',
      since: new Date(Date.UTC(2025, 4, 1, 12, 30)),
      until: '2025-05-02T00:00:00+02:00',
      cursor: 42,
      order: 'asc',
      limit: 1000,
    });
    const url = calls[0]!.url;
    expect(url.pathname).toBe('/v1/sys/audit');
    expect(url.search).toBe(
      '?identity=ci+bot%26co&namespace=payments-prod&path=db%2F&action=secret.write&outcome=denied' +
        '&since=2025-05-01T12%3A30%3A00.000Z&until=2025-05-02T00%3A00%3A00%2B02%3A00&cursor=42&order=asc&limit=1000',
    );
    expect(Object.fromEntries(url.searchParams)).toEqual({
      identity: 'ci bot&co',
      namespace: 'payments-prod',
      path: 'db/',
      action: 'secret.write',
      outcome: 'denied',
      since: '2025-05-01T12:30:00.000Z',
      until: '2025-05-02T00:00:00+02:00',
      cursor: '42',
      order: 'asc',
      limit: '1000',
    });
  });

  it('leaves out the filters that are not given', async () => {
    const { fetch, calls } = scripted(page([], null));
    await client(fetch).audit.search({ namespace: 'app', identity: undefined, cursor: 0 });
    expect(calls.map(request)).toEqual(['GET /v1/sys/audit?namespace=app&cursor=0']);
  });

  it('refuses a limit, cursor or Date the server would refuse, before sending anything', async () => {
    const { fetch, calls } = scripted(page([], null));
    const c = client(fetch);
    for (const query of [{ limit: 0 }, { limit: 1001 }, { limit: 2.5 }, { cursor: -1 }, { cursor: Number.NaN }, { since: new Date('not a date') }]) {
      const err = await failure(c.audit.search(query));
      expect({ query, code: err.code }).toEqual({ query, code: 'invalid_argument' });
    }
    expect(calls).toHaveLength(0);
  });

  it('retries on 503 like the other reads', async () => {
    const { fetch, calls } = scripted(sealed(), page([1], null));
    expect((await client(fetch).audit.search({ limit: 1 })).entries).toEqual([{ seq: 1 }]);
    expect(calls).toHaveLength(2);
  });
});

describe('client.audit.searchAll', () => {
  it('follows next_cursor with the same filters and order, pageSize as the limit', async () => {
    const { fetch, calls } = scripted(page([5, 4], 4), page([3, 2], 2), page([1], null));
    const seqs: number[] = [];
    for await (const entry of client(fetch).audit.searchAll({ namespace: 'app', pageSize: 2 })) seqs.push(entry.seq);
    expect(seqs).toEqual([5, 4, 3, 2, 1]);
    expect(calls.map(request)).toEqual([
      'GET /v1/sys/audit?namespace=app&limit=2',
      'GET /v1/sys/audit?namespace=app&cursor=4&limit=2',
      'GET /v1/sys/audit?namespace=app&cursor=2&limit=2',
    ]);
  });

  it('starts after a given cursor, oldest first, and fetches no more pages than the iteration reaches', async () => {
    const { fetch, calls } = scripted(page([11, 12], 12), page([13], null));
    const iterator = client(fetch).audit.searchAll({ order: 'asc', cursor: 10, action: 'secret.read' });
    for await (const entry of iterator) {
      expect(entry.seq).toBe(11);
      break;
    }
    expect(calls.map(request)).toEqual(['GET /v1/sys/audit?action=secret.read&cursor=10&order=asc']);
  });
});

describe('client.audit.verify and hash', () => {
  it('verify reads /v1/sys/audit/verify', async () => {
    const report = { ok: false, entries_checked: 9, checkpoints_checked: 1, head: { seq: 9, hash: 'ab' }, first_broken: { seq: 4, reason: 'entry 4 was altered' } };
    const { fetch, calls } = scripted(json(200, report));
    expect(await client(fetch).audit.verify()).toEqual(report);
    expect(calls.map(request)).toEqual(['GET /v1/sys/audit/verify']);
  });

  it('hash posts the value in the body (never the URL), returns the HMAC, and is retried: it is idempotent', async () => {
    const hmac = `hmac-sha256:${'0'.repeat(64)}`;
    const { fetch, calls } = scripted(sealed(), json(200, { hash: hmac }));
    expect(await client(fetch).audit.hash('hunter2')).toBe(hmac);
    expect(calls.map(request)).toEqual(['POST /v1/sys/audit/hash', 'POST /v1/sys/audit/hash']);
    expect(calls[1]!.body).toEqual({ input: 'hunter2' });
    expect(calls[1]!.url.href).not.toContain('hunter2');
  });

  it('never puts the value in an error', async () => {
    const { fetch } = scripted(json(403, { error: { code: 'permission_denied', message: 'the audit log needs admin rights', requestId: 'r' } }));
    const err = await failure(client(fetch).audit.hash('hunter2'));
    expect(err).toMatchObject({ status: 403, code: 'permission_denied' });
    expect(`${err.message} ${err.stack}`).not.toContain('hunter2');
  });
});
