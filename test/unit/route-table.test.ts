// The route table (server/src/http/route-table.ts) is the one list of what the server serves:
// express registration, the metrics label and the audit action are all read from it. This walks
// the table and checks each route is complete and named consistently; the integration test of
// the same name checks that express serves exactly this table.
import { CAPABILITIES } from '@coffer/sdk/api';
import { MOUNTS, ROUTES } from '@coffer/server/http/route-table';
import { ROUTE_TEMPLATES, UNMATCHED, describeRequest, matchRequest, routeTemplate } from '@coffer/server/http/route-template';

/** A request path for a template, with names that pass every name check. */
function instantiate(template: string): string {
  return template.replace(':ns', 'rt').replace(/:folder\/?/, 'app/').replace(':path', 'app/db').replace(':name', 'rt-x');
}

const ACTION = /^[a-z][a-z_-]*(\.[a-z][a-z_-]*)+$/;

describe('the route table', () => {
  it('declares every route with a template, an audit action and who may call it', () => {
    expect(ROUTES.length).toBeGreaterThan(70);
    const incomplete = ROUTES.filter((r) => {
      const a = r.op.access;
      const accessOk =
        a.kind === 'public' || a.kind === 'login' || a.kind === 'token' ||
        (a.kind === 'admin' && a.denied.length > 0) ||
        (a.kind === 'scoped' && [a.capability].flat().length > 0 && [a.capability].flat().every((c) => (CAPABILITIES as readonly string[]).includes(c)));
      return !r.template.startsWith(`${r.mount.prefix}`) || !ACTION.test(r.op.action) || !accessOk || typeof r.op.handler !== 'function';
    });
    expect(incomplete.map((r) => `${r.method} ${r.template}`)).toEqual([]);
  });

  it('has no route twice (method + template), and no template in two mounts', () => {
    const keys = ROUTES.map((r) => `${r.method} ${r.template}`);
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]);
    const templates = MOUNTS.flatMap((m) => m.paths.map((p) => p.template));
    expect(templates.filter((t, i) => templates.indexOf(t) !== i)).toEqual([]);
    expect([...ROUTE_TEMPLATES].sort()).toEqual([...new Set(templates)].sort());
  });

  it('names every route by its own template and audit action', () => {
    const wrong: string[] = [];
    for (const r of ROUTES) {
      const url = instantiate(r.template);
      const m = matchRequest(r.method, `${url}?x=1`);
      if (m.template !== r.template || m.action !== r.op.action || m.op !== r.op) wrong.push(`${r.method} ${url} → ${m.template} ${m.action}`);
      // HEAD is served by GET (express), and audited as what served it.
      if (r.method === 'GET' && !r.mount.own && matchRequest('HEAD', url).op !== r.op) wrong.push(`HEAD ${url}`);
    }
    expect(wrong).toEqual([]);
  });

  it('names a path with several actions for other methods only by an explicit declaration', () => {
    const implicit = MOUNTS.flatMap((m) => m.paths)
      .filter((p) => new Set(Object.values(p.ops).map((o) => o.action)).size > 1 && p.otherwise === undefined)
      .map((p) => p.template);
    expect(implicit).toEqual([]);
  });

  it('labels what no route serves as unmatched, and audits it by area', () => {
    expect(routeTemplate('/v1/sys/nope')).toBe(UNMATCHED);
    expect(describeRequest('GET', '/v1/sys/nope')).toEqual({ action: 'sys.unknown', namespace: null, path: null });
    expect(describeRequest('GET', '/v1/sys/audit/nope')).toEqual({ action: 'sys.unknown', namespace: null, path: null });
    expect(describeRequest('POST', '/v1/auth/nope/x')).toEqual({ action: 'auth.unknown', namespace: null, path: null });
    expect(describeRequest('GET', '/v1/namespaces/n%73/nope')).toEqual({ action: 'namespace.unknown', namespace: 'ns', path: null });
    expect(describeRequest('GET', '/v2/x?y=1')).toEqual({ action: 'unknown', namespace: null, path: '/v2/x' });
    expect(describeRequest('GET', '/v1/secrets')).toEqual({ action: 'unknown', namespace: null, path: '/v1/secrets' });
    // A method no operation of a known path serves keeps the name it always had.
    expect(describeRequest('PATCH', '/v1/secrets/ns/a/b')).toEqual({ action: 'secret.patch', namespace: 'ns', path: 'a/b' });
    expect(describeRequest('POST', '/v1/secrets/ns/a/b:steal')).toEqual({ action: 'secret.steal', namespace: 'ns', path: 'a/b' });
    expect(describeRequest('POST', '/v1/auth/groups/g')).toEqual({ action: 'auth.groups.write', namespace: null, path: 'g' });
    expect(describeRequest('PUT', '/v1/sys/policies')).toEqual({ action: 'sys.policies', namespace: null, path: null });
    expect(describeRequest('POST', '/v1/namespaces/ns')).toEqual({ action: 'namespace.create', namespace: 'ns', path: null });
    expect(describeRequest('PUT', '/v1/namespaces/ns/kek')).toEqual({ action: 'namespace.kek.unknown', namespace: 'ns', path: null });
    expect(matchRequest('PATCH', '/v1/auth/groups/g').op).toBeUndefined();
  });

  it('matches as express does: case-sensitive, undecoded, one optional trailing slash, non-empty names', () => {
    expect(routeTemplate('/v1/sys/health/')).toBe('/v1/sys/health');
    expect(routeTemplate('/v1/namespaces/ns/kek/')).toBe('/v1/namespaces/:name/kek');
    expect(routeTemplate('/v1/sys/health//')).toBe(UNMATCHED);
    expect(routeTemplate('/v1/sys/Health')).toBe(UNMATCHED);
    expect(routeTemplate('/v1/sys/%68ealth')).toBe(UNMATCHED);
    expect(routeTemplate('/v1/auth/groups//x')).toBe(UNMATCHED);
    expect(routeTemplate('/v1/auth/groups/%2F')).toBe('/v1/auth/groups/:name');
  });

  it('says which reads change state (an audit intent is recorded first)', () => {
    const writingReads = ROUTES.filter((r) => r.op.changesState).map((r) => `${r.method} ${r.template}`);
    expect(writingReads).toEqual(['GET /v1/byok/namespaces/:name/import-params', 'GET /v1/byok/root/import-params', 'GET /v1/kms/:ns/keys/:name/import-params']);
  });
});
