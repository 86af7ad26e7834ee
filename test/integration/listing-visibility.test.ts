// Listings show only what the caller's policy lets it see: a folder listing, a recursive
// listing, a bulk read and the namespace list never name a denied secret or folder, neither in
// their entries nor through a cursor, and their pages stay full while visible entries remain.
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, type ApiResponse, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

const decode = (cursor: string) => Buffer.from(cursor, 'base64url').toString('utf8');

describeEachStorage('listing visibility', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  let reader: string;
  const asRoot = (body?: unknown) => ({ token: root, ...(body === undefined ? {} : { body }) });

  const visible = ['app/db', 'app/api', 'app/deep/x', 'mixed/v', 'top', 'zeta'];
  const hidden = [
    'admin/root-pw',
    'admin/deep/key',
    // A folder whose every entry is denied one by one: the folder itself must not show.
    'team/a',
    'team/b',
    // Denied top-level secrets between visible ones (they would shorten pages).
    ...Array.from({ length: 12 }, (_, i) => `m-${String(i).padStart(2, '0')}`),
    // More than a listing samples per folder, all denied: the folder is looked into further.
    ...Array.from({ length: 10 }, (_, i) => `mixed/h${i}`),
    ...Array.from({ length: 10 }, (_, i) => `onlyhidden/h${i}`),
  ];

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { loginRatePerSecond: 0 });
    base = server.url;
    ({ token: root } = await initAndUnseal(base));
    for (const ns of ['a-hidden', 'ns', 'b-hidden', 'ns-two', 'c-hidden']) {
      expect((await api(base, 'POST', '/v1/namespaces', asRoot({ name: ns }))).status).toBe(201);
    }
    for (const path of [...visible, ...hidden]) {
      expect((await api(base, 'PUT', `/v1/secrets/ns/${path}`, asRoot({ data: { v: path } }))).status).toBe(200);
    }
    const deny = (path: string) => ({ namespace: 'ns', path, capabilities: ['read', 'list'], effect: 'deny' });
    expect((await api(base, 'PUT', '/v1/sys/policies/ns-reader', asRoot({
      rules: [
        { namespace: 'ns*', path: '*', capabilities: ['read', 'list'] },
        deny('admin/*'),
        deny('team/a'),
        deny('team/b'),
        deny('m-*'),
        deny('mixed/h*'),
        deny('onlyhidden/h*'),
      ],
    }))).status).toBe(201);
    reader = (await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['ns-reader'] }))).body.auth.client_token;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  /** Every page of a listing, with `limit` per page; asserts pages are full until the last. */
  async function allPages(path: string, limit: number, token: string, field: 'keys' | 'secrets' | 'namespaces'): Promise<{ items: string[]; cursors: string[] }> {
    const items: string[] = [];
    const cursors: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 200; pages++) {
      const sep = path.includes('?') ? '&' : '?';
      const res: ApiResponse = await api(base, 'GET', `${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { token });
      expect(res.status).toBe(200);
      const page = (res.body[field] as Array<string | { path?: string; name?: string }>).map((e) => (typeof e === 'string' ? e : (e.path ?? e.name)!));
      items.push(...page);
      cursor = res.body.next_cursor;
      if (!cursor) return { items, cursors };
      // A page with a cursor is a full page: filtering never leaves it short.
      expect(page).toHaveLength(limit);
      cursors.push(decode(cursor));
    }
    throw new Error('too many pages');
  }

  it('refuses the denied folder itself', async () => {
    expectError(await api(base, 'GET', '/v1/secrets/ns/admin/', { token: reader }), 403, 'permission_denied');
    expectError(await api(base, 'GET', '/v1/secrets/ns/admin/root-pw:versions', { token: reader }), 403, 'permission_denied');
    expectError(await api(base, 'GET', '/v1/secrets/ns/team/a:versions', { token: reader }), 403, 'permission_denied');
  });

  it('a recursive listing names no secret under a denied folder or denied itself', async () => {
    const res = await api(base, 'GET', '/v1/secrets/ns/?recursive=true', { token: reader });
    expect(res.status).toBe(200);
    expect(res.body.keys).toEqual([...visible].sort());
    expect(res.body.next_cursor).toBeNull();
    // Root sees everything, so the filter is the policy's and not the data's.
    const all = await api(base, 'GET', '/v1/secrets/ns/?recursive=true', { token: root });
    expect(all.body.keys).toEqual([...visible, ...hidden].sort());
  });

  it('a folder listing names no denied folder, and no folder that holds only denied entries', async () => {
    const res = await api(base, 'GET', '/v1/secrets/ns/', { token: reader });
    expect(res.body.keys).toEqual(['app/', 'mixed/', 'top', 'zeta']);
    expect((await api(base, 'GET', '/v1/secrets/ns/', { token: root })).body.keys).toEqual(
      ['admin/', 'app/', ...hidden.filter((p) => p.startsWith('m-')), 'mixed/', 'onlyhidden/', 'team/', 'top', 'zeta'],
    );
    expect((await api(base, 'GET', '/v1/secrets/ns/team/', { token: reader })).body.keys).toEqual([]);
    expect((await api(base, 'GET', '/v1/secrets/ns/mixed/', { token: reader })).body.keys).toEqual(['v']);
    expect((await api(base, 'GET', '/v1/secrets/ns/app/?recursive=true', { token: reader })).body.keys).toEqual(['api', 'db', 'deep/x']);
  });

  it('pages stay full and cursors name only what the caller was shown', async () => {
    for (const limit of [1, 2, 3]) {
      const rec = await allPages('/v1/secrets/ns/?recursive=true', limit, reader, 'keys');
      expect(rec.items).toEqual([...visible].sort());
      for (const c of rec.cursors) expect(visible).toContain(c);
      const flat = await allPages('/v1/secrets/ns/', limit, reader, 'keys');
      expect(flat.items).toEqual(['app/', 'mixed/', 'top', 'zeta']);
      for (const c of flat.cursors) expect(['app/', 'mixed/', 'top', 'zeta']).toContain(c);
      const bulk = await allPages('/v1/bulk/ns/', limit, reader, 'secrets');
      expect(bulk.items).toEqual([...visible].sort());
      for (const c of bulk.cursors) expect(visible).toContain(c);
    }
  });

  it('a folder with nothing the caller can see is a 404 for a bulk read, like one that does not exist (issue 12)', async () => {
    const nope = await api(base, 'GET', '/v1/bulk/ns/nope/', { token: reader });
    expectError(nope, 404, 'not_found');
    // Same answer whether denied secrets are there or not: the 404 names nothing.
    for (const folder of ['team/', 'onlyhidden/']) {
      const res = await api(base, 'GET', `/v1/bulk/ns/${folder}`, { token: reader });
      expectError(res, 404, 'not_found');
      expect(res.body.error.message).toBe(`no secrets under ns:${folder}`);
      expect((await api(base, 'GET', `/v1/bulk/ns/${folder}`, { token: root })).status).toBe(200);
    }
  });

  describe('a bulk read names what it withholds: listable but not readable (issue 12)', () => {
    let lister: string;
    const all = [...visible, ...hidden].sort();
    // What the lister may list but not read, and what it may neither see nor be told about.
    const withheld = ['app/db', ...hidden.filter((p) => p.startsWith('mixed/'))].sort();
    const unnamed = (p: string) => p.startsWith('admin/') || p.startsWith('team/');

    beforeAll(async () => {
      expect((await api(base, 'PUT', '/v1/sys/policies/ns-lister', asRoot({
        rules: [
          { namespace: 'ns', path: '*', capabilities: ['read', 'list'] },
          { namespace: 'ns', path: 'app/db', capabilities: ['read'], effect: 'deny' },
          { namespace: 'ns', path: 'mixed/h*', capabilities: ['read'], effect: 'deny' },
          { namespace: 'ns', path: 'admin/*', capabilities: ['read', 'list'], effect: 'deny' },
          // team/a and team/b may be listed one by one, but their folder may not: not named.
          { namespace: 'ns', path: 'team/', capabilities: ['list'], effect: 'deny' },
          { namespace: 'ns', path: 'team/*', capabilities: ['read'], effect: 'deny' },
        ],
      }))).status).toBe(201);
      lister = (await api(base, 'POST', '/v1/auth/token/create', asRoot({ policies: ['ns-lister'] }))).body.auth.client_token;
    });

    it('in one page, and never names what the caller may not list', async () => {
      const res = await api(base, 'GET', '/v1/bulk/ns/', { token: lister });
      expect(res.status).toBe(200);
      expect(res.body.withheld).toEqual(withheld);
      expect(res.body.secrets.map((s: { path: string }) => s.path)).toEqual(all.filter((p) => !withheld.includes(p) && !unnamed(p)));
      expect(JSON.stringify(res.body)).not.toMatch(/admin\/|team\//);
      // Everything withheld: 200 with no secrets, not a 404 (the caller knows what it lacks).
      const mixed = await api(base, 'GET', '/v1/bulk/ns/mixed/', { token: lister });
      expect(mixed.body.withheld).toEqual(withheld.filter((p) => p.startsWith('mixed/')));
      expect(mixed.body.secrets.map((s: { path: string }) => s.path)).toEqual(['mixed/v']);
    });

    it('across pages, which stay full counting withheld names, with cursors only on names shown', async () => {
      for (const limit of [1, 2, 5]) {
        const secrets: string[] = [];
        const names: string[] = [];
        let cursor: string | null = null;
        for (let pages = 0; pages < 200; pages++) {
          const res: ApiResponse = await api(base, 'GET', `/v1/bulk/ns/?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { token: lister });
          expect(res.status).toBe(200);
          const page = (res.body.secrets as Array<{ path: string }>).map((s) => s.path);
          secrets.push(...page);
          names.push(...(res.body.withheld as string[]));
          cursor = res.body.next_cursor;
          if (!cursor) break;
          expect(page.length + res.body.withheld.length).toBe(limit);
          expect([...page, ...res.body.withheld]).toContain(decode(cursor));
        }
        expect(cursor).toBeNull();
        expect(names).toEqual(withheld);
        expect(secrets).toEqual(all.filter((p) => !withheld.includes(p) && !unnamed(p)));
      }
    });
  });

  it('the namespace list keeps its pages full and its cursors to namespaces the caller may list', async () => {
    const { items, cursors } = await allPages('/v1/namespaces', 1, reader, 'namespaces');
    expect(items).toEqual(['ns', 'ns-two']);
    expect(cursors).toEqual(['ns']);
    expect((await allPages('/v1/namespaces', 2, root, 'namespaces')).items).toEqual(['a-hidden', 'b-hidden', 'c-hidden', 'ns', 'ns-two']);
  });

  it('a crafted cursor inside a denied folder still shows nothing from it', async () => {
    const cursor = Buffer.from('admin/').toString('base64url');
    const res = await api(base, 'GET', `/v1/secrets/ns/?recursive=true&cursor=${cursor}`, { token: reader });
    expect(res.body.keys).toEqual(['app/api', 'app/db', 'app/deep/x', 'mixed/v', 'top', 'zeta']);
  });
});
