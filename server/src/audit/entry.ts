/**
 * What one audit entry says about one request. Built from the request after
 * the response is decided; it names who did what to which path with what
 * outcome, and carries HMACs (never values) of sensitive fields.
 */
import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import type { AuditEntry, AuditIdentity } from '@coffer/sdk/api';
import type { Principal } from '../policy/policy.js';
import { AUTH_TEMPLATES, BYOK_TEMPLATES, ESCROW_TEMPLATES, matchTemplate } from '../http/route-template.js';
import { isUnstorableText } from './storable.js';

export type { AuditEntry, AuditIdentity } from '@coffer/sdk/api';

export type AuditDraft = Omit<AuditEntry, 'seq' | 'time'>;

/**
 * The entry of something the server did by itself (a background job, the audit
 * log reporting its own outage): no request, no client, a system identity.
 */
export function systemDraft(
  identity: { id: `system:${string}`; display_name: string },
  action: string,
  fields: Partial<Pick<AuditDraft, 'namespace' | 'path' | 'version' | 'reason'>> = {},
): AuditDraft {
  return {
    request_id: randomUUID(),
    identity: { ...identity, method: 'none' },
    action,
    namespace: null,
    path: null,
    version: null,
    outcome: 'success',
    status: 200,
    error_code: null,
    client: null,
    hashed: {},
    ...fields,
  };
}

interface Described {
  action: string;
  namespace: string | null;
  path: string | null;
}

const SYS_ACTIONS = new Set([
  'init',
  'unseal',
  'seal',
  'seal-status',
  'health',
  'ready',
  'metrics',
  'audit',
  'audit/verify',
  'audit/hash',
  'rotate-root',
  'rotate-root/verify',
  'seal-migrate',
]);

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

/**
 * Maps method + URL to a stable action name and the namespace/path it touched.
 * A handler that knows its target names it instead (http/audit.ts `auditTarget`);
 * this is what requests that never reached one are described by.
 */
export function describeRequest(method: string, url: string): Described {
  const q = url.indexOf('?');
  const pathname = q === -1 ? url : url.slice(0, q);
  const parts = pathname.split('/');
  // ['', 'v1', area, ...rest]
  const area = parts[2];
  const rest = parts.slice(3);
  if (parts[1] === 'v1' && (area === 'secrets' || area === 'bulk') && rest.length > 0) {
    const namespace = rest[0]!.slice(0, 64);
    let path = rest.slice(1).join('/').slice(0, 600);
    let suffix: string | null = null;
    const colon = path.lastIndexOf(':');
    if (colon !== -1) {
      suffix = path.slice(colon + 1);
      path = path.slice(0, colon);
    }
    if (area === 'bulk') return { action: 'secret.bulk_read', namespace, path };
    if (suffix !== null) return { action: `secret.${suffix === 'versions' ? 'history' : suffix}`, namespace, path };
    if (path === '' || path.endsWith('/')) return { action: 'secret.list', namespace, path };
    const verb = method === 'GET' ? 'read' : method === 'DELETE' ? 'delete' : method === 'PUT' || method === 'POST' ? 'write' : method.toLowerCase();
    return { action: `secret.${verb}`, namespace, path };
  }
  if (parts[1] === 'v1' && area === 'namespaces') {
    const name = rest[0] ? routedSegment(rest[0]).slice(0, 64) : null;
    const sub = rest.slice(1).join('/');
    if (sub !== '') {
      // KEK lifecycle and shredding of one namespace.
      const action =
        sub === 'kek' ? (method === 'GET' ? 'namespace.kek.read' : 'namespace.kek.unknown')
        : sub === 'kek/rotate' ? 'namespace.kek.rotate'
        : sub === 'shred' ? (method === 'DELETE' ? 'namespace.shred.cancel' : 'namespace.shred.schedule')
        : 'namespace.unknown';
      return { action, namespace: name, path: null };
    }
    const verb =
      method === 'POST' ? 'create' : method === 'DELETE' ? 'delete' : method === 'PATCH' ? 'update' : name ? 'read' : 'list';
    return { action: `namespace.${verb}`, namespace: name, path: null };
  }
  if (parts[1] === 'v1' && area === 'sys') {
    const name = rest.join('/');
    if (SYS_ACTIONS.has(name)) return { action: `sys.${name.replace('/', '.')}`, namespace: null, path: null };
    const m = matchTemplate(name, ['policies', 'policies/:name', 'capabilities-self', 'generate-root']);
    return m ? { action: templateAction('sys', m.template, method), namespace: null, path: nameOf(m, 128) } : { action: 'sys.unknown', namespace: null, path: null };
  }
  if (parts[1] === 'v1' && area === 'auth') {
    const m = matchTemplate(rest.join('/'), AUTH_TEMPLATES);
    return m
      ? { action: templateAction('auth', m.template, method), namespace: null, path: nameOf(m, 128) }
      : { action: 'auth.unknown', namespace: null, path: null };
  }
  if (parts[1] === 'v1' && (area === 'byok' || area === 'escrow')) {
    const m = matchTemplate(rest.join('/'), area === 'byok' ? BYOK_TEMPLATES : ESCROW_TEMPLATES);
    if (!m) return { action: `${area}.unknown`, namespace: null, path: null };
    if (area === 'byok') {
      // byok.import_params / byok.import / byok.root.import_params / byok.root.import; the namespace is the name.
      const root = m.template.startsWith('root/');
      const what = m.template.endsWith('import-params') ? 'import_params' : 'import';
      return { action: root ? `byok.root.${what}` : `byok.${what}`, namespace: root ? null : nameOf(m, 64), path: null };
    }
    // escrow.request / escrow.read / escrow.approve / escrow.download; the path is the request id
    // (the namespace is filled in by the handler once the request is loaded).
    const action =
      m.template === 'requests' ? (method === 'GET' ? 'escrow.list' : 'escrow.request') : m.template === 'requests/:name' ? 'escrow.read' : `escrow.${m.template.split('/').pop()}`;
    return { action, namespace: null, path: nameOf(m, 64) };
  }
  return { action: 'unknown', namespace: null, path: pathname.slice(0, 256) };
}

function nameOf(m: { name: string | null }, max: number): string | null {
  return m.name === null ? null : routedSegment(m.name).slice(0, max);
}

/**
 * `userpass/users/:name` + PUT → `auth.userpass.users.write`; collections
 * (`groups`) + GET → `.list`; action endpoints (`token/create`) keep their name.
 */
function templateAction(area: string, template: string, method: string): string {
  const segments = template.split('/');
  const resource = segments[segments.length - 1] === ':name';
  const base = `${area}.${segments.filter((s) => s !== ':name').join('.')}`;
  const collection = !resource && method === 'GET' && !/-self$|role-id|secret-ids$/.test(template);
  if (resource) return `${base}.${method === 'GET' ? 'read' : method === 'DELETE' ? 'delete' : 'write'}`;
  if (collection && /^(userpass\/users|groups|approle\/roles|jwt\/issuers|jwt\/roles|cert\/roles|policies)$/.test(template)) return `${base}.list`;
  return base;
}

export function outcomeOf(status: number): AuditEntry['outcome'] {
  if (status < 400) return 'success';
  if (status === 401 || status === 403) return 'denied';
  return 'error';
}

/**
 * Builds the draft for a finished request. `hmac` is null while sealed (the
 * audit key is not in memory); sensitive fields are then left out entirely.
 */
export function draftFor(
  req: Request,
  status: number,
  requestId: string,
  principal: Principal | undefined,
  errorCode: string | null,
  hmac: (value: string) => string | null,
): AuditDraft {
  const described = describeRequest(req.method, req.originalUrl);
  const hashed: Record<string, string> = {};
  let identity: AuditIdentity | null = null;
  if (principal) {
    identity = { id: principal.identity, method: 'token', display_name: principal.displayName };
    const accessor = hmac(principal.accessor);
    if (accessor) identity.accessor_hmac = accessor;
  }
  // Sensitive fields are recorded as HMACs only; while sealed (no audit key) they are left out.
  const put = (field: string, value: unknown) => {
    const digest = typeof value === 'string' ? hmac(value) : null;
    if (digest) hashed[field] = digest;
  };
  const body = req.body as Record<string, unknown> | undefined;
  if (body && typeof body === 'object') {
    const data = body.data;
    if (data && typeof data === 'object' && described.action === 'secret.write') {
      for (const [key, value] of Object.entries(data as Record<string, unknown>)) put(`data.${key}`, value);
    }
    if (described.action === 'sys.audit.hash') put('input', body.input);
    if (described.action === 'sys.unseal' || described.action === 'sys.generate-root') put('share', body.share);
    // Who tried to log in, never with what: passwords, secret_ids and JWTs are not recorded at all.
    if (described.action === 'auth.userpass.login' && typeof body.username === 'string') described.path = body.username.slice(0, 128);
    if ((described.action === 'auth.jwt.login' || described.action === 'auth.cert.login') && typeof body.role === 'string') described.path = body.role.slice(0, 64);
    if (described.action === 'auth.approle.login') put('role_id', body.role_id);
    if (typeof body.accessor === 'string') put('accessor', body.accessor);
  }
  let namespace = described.namespace;
  if (described.action === 'namespace.create' && body && typeof body.name === 'string') namespace = body.name.slice(0, 64);
  const versionParam = typeof req.query?.version === 'string' ? Number.parseInt(req.query.version, 10) : NaN;
  return {
    request_id: requestId,
    identity,
    action: described.action,
    namespace,
    path: described.path,
    version: Number.isInteger(versionParam) && versionParam > 0 ? versionParam : null,
    outcome: outcomeOf(status),
    status,
    error_code: errorCode,
    client: req.socket.remoteAddress ?? null,
    hashed,
  };
}
