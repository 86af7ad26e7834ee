/**
 * What a request is, read from the route table (route-table.ts): its route
 * template (`/v1/secrets/:ns/:path`), which metrics labels and request logs
 * name instead of the raw path, and the audit action and target its entry
 * names. One matcher for both, built from the same declarations express
 * serves, so a route cannot be counted under one name and audited under
 * another.
 *
 * A template never holds a namespace, secret path, action name or query
 * string, so label cardinality stays small and logs stay free of names an
 * organisation may consider sensitive. Anything unrecognised is `unmatched`.
 * Matching is express's: case-sensitive, on the raw (undecoded) path, one
 * optional trailing slash, `:name` one non-empty segment.
 */
import type { Request } from 'express';
import { isUnstorableText } from '../audit/storable.js';
import type { Described } from '../audit/entry.js';
import type { Mount, Operation, RoutePath } from './route.js';
import { MOUNTS, ROUTES, otherwiseAction } from './route-table.js';

export const UNMATCHED = 'unmatched';

/** Every route template the server serves (the fuzz suite instantiates each of them). */
export const ROUTE_TEMPLATES: readonly string[] = [...new Set(ROUTES.map((r) => r.template))];

/** The templates of one mount, below its prefix (`userpass/users/:name`). */
const below = (mount: Mount) => [...new Set(mount.paths.map((p) => p.template.slice(mount.prefix.length + 1)))];
export const AUTH_TEMPLATES: readonly string[] = below(MOUNTS.find((m) => m.prefix === '/v1/auth')!);
export const BYOK_TEMPLATES: readonly string[] = below(MOUNTS.find((m) => m.prefix === '/v1/byok')!);
export const ESCROW_TEMPLATES: readonly string[] = below(MOUNTS.find((m) => m.prefix === '/v1/escrow')!);

/** A request matched against the table. */
export interface RequestMatch extends Described {
  template: string;
  /** The operation that serves it (HEAD is served by GET, as express does), if any. */
  op: Operation | undefined;
}

interface Compiled {
  path: RoutePath;
  mount: Mount;
  /** The template split at '/'; `:x` matches one non-empty segment. */
  segments: string[];
}

/** Declared paths of express-routed mounts, by segment count. */
const bySegments = new Map<number, Compiled[]>();
for (const mount of MOUNTS) {
  if (mount.own) continue;
  for (const path of mount.paths) {
    const segments = path.template.split('/');
    const list = bySegments.get(segments.length) ?? [];
    list.push({ path, mount, segments });
    bySegments.set(segments.length, list);
  }
}

/**
 * A `:name` path segment as express hands it to the handler (percent-decoded),
 * so that `/v1/namespaces/n%73` is recorded as the namespace `ns` it served.
 * Left as sent when it does not decode (express refuses it: 400).
 */
function routedSegment(raw: string): string {
  try {
    const decoded = decodeURIComponent(raw);
    return isUnstorableText(decoded) ? raw : decoded;
  } catch {
    return raw;
  }
}

const within = (pathname: string, prefix: string) =>
  pathname.startsWith(prefix) && (pathname.length === prefix.length || pathname.charCodeAt(prefix.length) === 47); /* '/' */

/** Matches `method` + `url` (the request target as received, query string or not). */
export function matchRequest(method: string, url: string): RequestMatch {
  const q = url.indexOf('?');
  const pathname = q === -1 ? url : url.slice(0, q);
  const mount = MOUNTS.find((m) => within(pathname, m.prefix));
  if (!mount) return { template: UNMATCHED, op: undefined, action: 'unknown', namespace: null, path: pathname.slice(0, 256) };

  if (mount.own) {
    const m = mount.own.match(pathname.slice(mount.prefix.length), pathname);
    const op = m.path?.ops[method as keyof RoutePath['ops']];
    const action = op?.action ?? (m.path ? otherwiseAction(m.path, method) : m.otherwise);
    return { template: m.template, op, action, namespace: m.namespace, path: m.auditPath };
  }

  const parts = pathname.split('/');
  // One trailing slash is allowed (express's non-strict routing).
  if (parts.length > 2 && parts[parts.length - 1] === '') parts.pop();
  for (const c of bySegments.get(parts.length) ?? []) {
    let name: string | null = null;
    let ns: string | null = null;
    let ok = true;
    for (let i = 0; i < parts.length && ok; i++) {
      const s = c.segments[i]!;
      if (s.charCodeAt(0) === 58 /* ':' */) {
        ok = parts[i]!.length > 0;
        if (s === ':name') name = parts[i]!;
        else if (s === ':ns') ns = parts[i]!;
      } else ok = s === parts[i];
    }
    if (!ok) continue;
    const ops = c.path.ops;
    const op = ops[method as keyof typeof ops] ?? (method === 'HEAD' ? ops.GET : undefined);
    const action = op?.action ?? otherwiseAction(c.path, method);
    const names = c.mount.names;
    const value = name === null || !names ? null : routedSegment(name).slice(0, names.max);
    return {
      template: c.path.template,
      op,
      action,
      // `:ns` names the namespace where `:name` names something inside it (a KMS key).
      namespace: names?.as === 'namespace' ? value : ns === null ? null : routedSegment(ns).slice(0, 64),
      path: names?.as === 'path' ? value : null,
    };
  }
  let namespace: string | null = null;
  if (mount.unknown.namespaceFromFirstSegment) {
    const first = pathname.slice(mount.prefix.length + 1).split('/')[0];
    namespace = first ? routedSegment(first).slice(0, 64) : null;
  }
  return { template: UNMATCHED, op: undefined, action: mount.unknown.action, namespace, path: null };
}

/** The route template of `url` (`req.originalUrl`), query string included or not. */
export function routeTemplate(url: string): string {
  return matchRequest('GET', url).template;
}

/**
 * Maps method + URL to the audit action and the namespace/path it touched.
 * A handler that knows its target names it instead (route.ts `auditTarget`);
 * this is what requests that never reached one are described by.
 */
export function describeRequest(method: string, url: string): Described {
  const { action, namespace, path } = matchRequest(method, url);
  return { action, namespace, path };
}

/** The request's match, computed once (metrics, the request log and the audit entry all ask). */
const matched = new WeakMap<Request, RequestMatch>();
export function matchOf(req: Request): RequestMatch {
  let m = matched.get(req);
  if (!m) {
    m = matchRequest(req.method, req.originalUrl);
    matched.set(req, m);
  }
  return m;
}
