// Express serves exactly the route table (server/src/http/route-table.ts): every declared route
// is reached (never the "no such endpoint" 404, never a 405) and its audit entry names the
// declared action; every method a path does not declare, and paths no route declares, get
// today's 404 (405 on the secret paths). Storage plays no part here: PGlite only.
import { METHODS } from '@coffer/server/http/route';
import { MOUNTS, ROUTES } from '@coffer/server/http/route-table';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

/** A request path for a template, with names that pass every name check. */
function instantiate(template: string): string {
  return template.replace(':ns', 'rt').replace(/:folder\/?/, 'app/').replace(':path', 'app/db').replace(':name', 'rt-x');
}

/** What express keeps of a registration (express 5 / router 2 internals, read-only). */
interface Layer {
  rawPath?: string;
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
}

const UNAUDITED = new Set(['/v1/sys/health', '/v1/sys/ready', '/v1/sys/metrics']);
const noSuchEndpoint = (res: { status: number; body: any }) => res.status === 404 && res.body?.error?.message === 'no such endpoint';

describe('express serves the route table', () => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  let limited: string;

  beforeAll(async () => {
    store = await createStore('pglite');
    server = await startTestServer(store);
    base = server.url;
    ({ token: root } = await initAndUnseal(base, 1, 1));
    const policy = { rules: [{ namespace: 'elsewhere', path: '*', capabilities: ['read'] }] };
    expect((await api(base, 'PUT', '/v1/sys/policies/rt-nothing', { token: root, body: policy })).status).toBe(201);
    limited = (await api(base, 'POST', '/v1/auth/token/create', { token: root, body: { policies: ['rt-nothing'] } })).body.auth.client_token;
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  const lastEntry = async () => (await api(base, 'GET', '/v1/sys/audit?limit=1', { token: root })).body.entries[0];

  it('registers on express the routes of the table and nothing else (its router stack)', () => {
    const app = server.server.listeners('request')[0] as unknown as { router: { stack: Layer[] } };
    const mounts = app.router.stack.filter((l) => l.handle.stack !== undefined);
    expect(mounts.map((l) => l.rawPath)).toEqual(MOUNTS.map((m) => m.prefix));
    const registered = mounts.flatMap((mount) =>
      mount.handle.stack!.flatMap((l) => (l.route ? Object.keys(l.route.methods).map((m) => `${m.toUpperCase()} ${mount.rawPath}${l.route!.path === '/' ? '' : l.route!.path}`) : [])),
    );
    // Secret paths are routed by their mount's own dispatcher (from the same declarations; probed below).
    const declared = ROUTES.filter((r) => !r.mount.own).map((r) => `${r.method} ${r.template}`);
    expect(registered.sort()).toEqual(declared.sort());
  });

  it('reaches every declared route, audited under its declared action', async () => {
    const wrong: string[] = [];
    // Revoking the caller's own token last: every other probe needs it.
    const ordered = [...ROUTES].sort((a, b) => Number(a.template.endsWith('/revoke-self')) - Number(b.template.endsWith('/revoke-self')));
    for (const r of ordered) {
      const path = instantiate(r.template);
      // A token without rights: admin routes answer 403, scoped ones 403 or 400, public ones refuse `{}`.
      const res = await api(base, r.method, path, { token: limited, body: r.method === 'GET' || r.method === 'DELETE' ? undefined : {} });
      if (noSuchEndpoint(res) || res.status === 405 || res.status >= 500) wrong.push(`${r.method} ${path} → ${res.status} ${res.text.slice(0, 120)}`);
      if (UNAUDITED.has(r.template)) continue;
      const entry = await lastEntry();
      if (entry.action !== r.op.action || entry.request_id !== res.headers.get('x-request-id')) wrong.push(`${r.method} ${path} audited as ${entry.action}`);
    }
    expect(wrong).toEqual([]);
    expect(server.core.isSealed).toBe(false);
  }, 120_000);

  it('serves no method a path does not declare, and no path the table does not name', async () => {
    const served: string[] = [];
    const templates = new Map<string, Set<string>>();
    for (const r of ROUTES) templates.set(r.template, (templates.get(r.template) ?? new Set()).add(r.method));
    for (const [template, declared] of templates) {
      const path = instantiate(template);
      for (const method of METHODS.filter((m) => !declared.has(m))) {
        // Root passes every guard: what answers is the routing itself.
        const res = await api(base, method, path, { token: root, body: method === 'DELETE' || method === 'GET' ? undefined : {} });
        const own = template.startsWith('/v1/secrets/') || template.startsWith('/v1/bulk/');
        const expected = own ? res.status === 405 && res.body?.error?.code === 'method_not_allowed' : noSuchEndpoint(res);
        if (!expected) served.push(`${method} ${path} → ${res.status}`);
      }
    }
    for (const path of ['/v1/nope', '/v1/sys/nope', '/v1/sys/audit/nope', '/v1/sys/policies/a/b', '/v1/auth/nope', '/v1/auth/token/nope', '/v1/namespaces/rt-x/nope', '/v1/byok/nope', '/v1/escrow/requests/a/b/c']) {
      for (const method of ['GET', 'POST']) {
        const res = await api(base, method, path, { token: root, body: method === 'POST' ? {} : undefined });
        if (!noSuchEndpoint(res)) served.push(`${method} ${path} → ${res.status}`);
      }
    }
    expect(served).toEqual([]);
  }, 120_000);
});
