/**
 * The route template of a request, e.g. `/v1/secrets/:ns/:path`: what metrics
 * labels and request logs name instead of the raw path. A template never holds
 * a namespace, secret path, action name or query string, so label cardinality
 * stays small and logs stay free of names an organisation may consider
 * sensitive. Anything unrecognised is `unmatched`.
 */

const SYS = new Set(['init', 'unseal', 'seal', 'seal-status', 'health', 'ready', 'metrics', 'audit', 'audit/verify', 'audit/hash', 'rotate-root', 'seal-migrate']);
const AUTH = new Set(['token/lookup-self', 'token/revoke-self']);
const SECRET_ACTIONS = new Set(['versions', 'rollback', 'delete', 'undelete', 'destroy', 'purge']);

export const UNMATCHED = 'unmatched';

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
      return name.includes('/') ? UNMATCHED : '/v1/namespaces/:name';
    }
    case 'sys': {
      const what = trimSlash(rest);
      return SYS.has(what) ? `/v1/sys/${what}` : UNMATCHED;
    }
    case 'auth': {
      const what = trimSlash(rest);
      return AUTH.has(what) ? `/v1/auth/${what}` : UNMATCHED;
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
