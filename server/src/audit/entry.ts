/**
 * What one audit entry says about one request. Built from the request after
 * the response is decided; it names who did what to which path with what
 * outcome, and carries HMACs (never values) of sensitive fields.
 */
import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import type { AuditEntry, AuditIdentity } from '@coffer/sdk/api';
import type { Principal } from '../policy/policy.js';

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

/**
 * What the request was, as the route table names it (http/route-template.ts):
 * the action of the route that served it, and the namespace and path it
 * touched. Handed in as data; the audit log does not parse URLs.
 */
export interface Described {
  action: string;
  namespace: string | null;
  path: string | null;
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
  request: Described,
  status: number,
  requestId: string,
  principal: Principal | undefined,
  errorCode: string | null,
  hmac: (value: string) => string | null,
  accessorHmac: (accessor: string) => string | null = hmac,
): AuditDraft {
  const described = { action: request.action, namespace: request.namespace, path: request.path };
  const hashed: Record<string, string> = {};
  let identity: AuditIdentity | null = null;
  if (principal) {
    identity = { id: principal.identity, method: 'token', display_name: principal.displayName };
    const accessor = accessorHmac(principal.accessor);
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
    // KMS operations: the associated data is context the caller may treat as sensitive (a tenant or
    // record id), so only its HMAC is kept; plaintext, ciphertext, signatures and key bytes never are.
    if (described.action.startsWith('kms.')) put('associated_data', body.associated_data);
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
