/**
 * The route template of a request, e.g. `/v1/secrets/:ns/:path`: what metrics
 * labels and request logs name instead of the raw path. A template never holds
 * a namespace, secret path, action name or query string, so label cardinality
 * stays small and logs stay free of names an organisation may consider
 * sensitive. Anything unrecognised is `unmatched`.
 */

const SYS = new Set(['init', 'unseal', 'seal', 'seal-status', 'health', 'ready', 'metrics', 'audit', 'audit/verify', 'audit/hash', 'rotate-root', 'rotate-root/verify', 'seal-migrate']);
/**
 * Auth and policy routes, `:name` standing for a user, group, role, issuer or
 * policy name. Shared with the audit log, which derives its action names from them.
 */
export const AUTH_TEMPLATES = [
  'userpass/login',
  'approle/login',
  'jwt/login',
  'cert/login',
  'token/lookup-self',
  'token/renew-self',
  'token/revoke-self',
  'token/create',
  'token/lookup-accessor',
  'token/revoke-accessor',
  'token/revoke-identity',
  'userpass/users',
  'userpass/users/:name',
  'userpass/users/:name/unlock',
  'groups',
  'groups/:name',
  'approle/roles',
  'approle/roles/:name',
  'approle/roles/:name/role-id',
  'approle/roles/:name/secret-id',
  'approle/roles/:name/secret-ids',
  'approle/roles/:name/secret-id/revoke',
  'approle/roles/:name/unlock',
  'jwt/issuers',
  'jwt/issuers/:name',
  'jwt/roles',
  'jwt/roles/:name',
  'cert/roles',
  'cert/roles/:name',
] as const;

const SYS_TEMPLATES = ['policies', 'policies/:name', 'capabilities-self', 'generate-root'] as const;

/** Matches `rest` (no leading slash) against `templates`; returns the template and the `:name` it bound. */
export function matchTemplate(rest: string, templates: readonly string[]): { template: string; name: string | null } | null {
  const parts = trimSlash(rest).split('/');
  for (const template of templates) {
    const t = template.split('/');
    if (t.length !== parts.length) continue;
    let name: string | null = null;
    let ok = true;
    for (let i = 0; i < t.length && ok; i++) {
      if (t[i] === ':name') {
        name = parts[i]!;
        ok = name.length > 0;
      } else ok = t[i] === parts[i];
    }
    if (ok) return { template, name };
  }
  return null;
}
const SECRET_ACTIONS = new Set(['versions', 'rollback', 'delete', 'undelete', 'destroy', 'purge']);

const NAMESPACE_SUBRESOURCES = new Set(['kek', 'kek/rotate', 'shred']);

export const UNMATCHED = 'unmatched';

/** BYOK import and escrow export routes (`:name` is the namespace or the escrow request id). */
export const BYOK_TEMPLATES = ['namespaces/:name/import-params', 'namespaces/:name/import', 'root/import-params', 'root/import'] as const;
export const ESCROW_TEMPLATES = ['requests', 'requests/:name', 'requests/:name/approve', 'requests/:name/download'] as const;

/** `url` is the request target as received (`req.originalUrl`), query string included or not. */
export function routeTemplate(url: string): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (!path.startsWith('/v1/')) return UNMATCHED;
  const slash = path.indexOf('/', 4);
  const mount = slash === -1 ? path.slice(4) : path.slice(4, slash);
  const rest = slash === -1 ? '' : path.slice(slash + 1);
  switch (mount) {
    case 'secrets':
      return secretsTemplate(rest);
    case 'bulk':
      return '/v1/bulk/:ns/:folder';
    case 'namespaces': {
      const name = trimSlash(rest);
      if (name === '') return '/v1/namespaces';
      const slash = name.indexOf('/');
      if (slash === -1) return '/v1/namespaces/:name';
      const sub = name.slice(slash + 1);
      return NAMESPACE_SUBRESOURCES.has(sub) ? `/v1/namespaces/:name/${sub}` : UNMATCHED;
    }
    case 'sys': {
      const what = trimSlash(rest);
      if (SYS.has(what)) return `/v1/sys/${what}`;
      const m = matchTemplate(rest, SYS_TEMPLATES);
      return m ? `/v1/sys/${m.template}` : UNMATCHED;
    }
    case 'auth': {
      const m = matchTemplate(rest, AUTH_TEMPLATES);
      return m ? `/v1/auth/${m.template}` : UNMATCHED;
    }
    case 'byok': {
      const m = matchTemplate(rest, BYOK_TEMPLATES);
      return m ? `/v1/byok/${m.template}` : UNMATCHED;
    }
    case 'escrow': {
      const m = matchTemplate(rest, ESCROW_TEMPLATES);
      return m ? `/v1/escrow/${m.template}` : UNMATCHED;
    }
    default:
      return UNMATCHED;
  }
}

/** `rest` is what follows `/v1/secrets/`: `ns`, `ns/folder/`, `ns/a/b`, `ns/a/b:action`. */
function secretsTemplate(rest: string): string {
  const slash = rest.indexOf('/');
  let path = slash === -1 ? '' : rest.slice(slash + 1);
  const colon = path.lastIndexOf(':');
  let action: string | null = null;
  if (colon !== -1) {
    action = path.slice(colon + 1);
    path = path.slice(0, colon);
  }
  if (path === '' || path.endsWith('/')) return action === null ? '/v1/secrets/:ns/:folder/' : '/v1/secrets/:ns/:folder/:*';
  if (action === null) return '/v1/secrets/:ns/:path';
  return SECRET_ACTIONS.has(action) ? `/v1/secrets/:ns/:path:${action}` : '/v1/secrets/:ns/:path:*';
}

function trimSlash(s: string): string {
  return s.endsWith('/') ? s.slice(0, -1) : s;
}
