/**
 * /v1/secrets/{namespace}/{path} and /v1/bulk/{namespace}/{folder/}.
 *
 *   GET    …/{path}[?version=N]   read the latest (or a given) version
 *   PUT    …/{path}               write a new version (POST works too)
 *   DELETE …/{path}               soft-delete the latest version
 *   GET    …/{folder}/            list a folder (paginated; ?recursive=true)
 *   GET    …/{path}:versions      version history
 *   POST   …/{path}:rollback      {version, cas?}: old version rewritten as newest
 *   POST   …/{path}:delete | :undelete | :destroy   {versions?: [N…]} (default latest)
 *   POST   …/{path}:purge         remove the secret with every version
 *
 * Path segments are [A-Za-z0-9._-], so the `:action` suffix cannot clash with
 * a secret name. The path is parsed here rather than by express so that a
 * trailing slash (folder) and percent-encoding are handled exactly; which
 * declared route serves it is then read from the table below, like any other.
 */
import type { Request, Response } from 'express';
import { CofferError, badRequest } from '../../errors.js';
import { isAllowed, type Capability } from '../../policy/policy.js';
import { checkFolder, checkNamespaceName, checkSecretPath } from '../../secrets/names.js';
import { decodeCursor } from '../../secrets/pagination.js';
import type { VersionAction } from '../../secrets/secret-service.js';
import { principalOf } from '../auth.js';
import { isConditional, sendJson, sendOwnedJson } from '../send-json.js';
import { auditTarget, op, type Access, type Mount, type Operation, type OwnMatch, type RoutePath, type RouteContext } from '../route.js';
import { emptyQuery, pageQuery, readQuery, rollbackBody, versionsBody, writeSecretBody } from '../schemas.js';

interface Target {
  namespace: string;
  /** The secret path, or the folder ('' or ending in '/') when `folder` is true. */
  path: string;
  folder: boolean;
  action: string | null;
}

/** Splits `/ns/a/b:action` (relative to the mount point). */
function parseTarget(rawPath: string): Target {
  if (/%|\\/.test(rawPath)) throw badRequest('secret paths use only A-Z a-z 0-9 . _ - and "/"');
  const rest = rawPath.startsWith('/') ? rawPath.slice(1) : rawPath;
  const slash = rest.indexOf('/');
  const namespace = checkNamespaceName(slash === -1 ? rest : rest.slice(0, slash));
  let path = slash === -1 ? '' : rest.slice(slash + 1);
  let action: string | null = null;
  const colon = path.lastIndexOf(':');
  if (colon !== -1) {
    action = path.slice(colon + 1);
    path = path.slice(0, colon);
  }
  const folder = path === '' || path.endsWith('/');
  if (folder) checkFolder(path);
  else checkSecretPath(path);
  return { namespace, path, folder, action };
}

const denied = (capability: Capability, namespace: string, path: string) =>
  new CofferError('permission_denied', `permission denied: ${capability} on ${namespace}:${path || '/'}`);
/** A capability on the secret path (or folder) the request names. */
const on = (capability: Capability | readonly Capability[]): Access => ({ kind: 'scoped', capability, denied });

/** The parsed target of the request being served (set by the dispatcher before the handler runs). */
const targets = new WeakMap<Request, Target>();

/** An operation on the request's secret target; the handler gets the parsed target. */
function secretOp<Q, B>(
  declared: Omit<Operation<Q, B, Target>, 'handler' | 'target'>,
  handler: (t: Target, res: Response, ctx: RouteContext<Q, B, Target>) => unknown,
): Operation {
  return op<Q, B, Target>({ ...declared, target: (req) => targets.get(req)!, handler: (_req, res, ctx) => handler(ctx.target, res, ctx) });
}

/** POST …:delete | :undelete | :destroy. */
const versionOp = (action: VersionAction, capability: Capability) =>
  secretOp(
    { action: `secret.${action}`, access: on(capability), body: versionsBody, bodyMayBeAbsent: true },
    async (t, res, { core, body }) => {
      res.json(await core.services().secrets.changeVersions(t.namespace, t.path, action, body().versions));
    },
  );

const SECRET: RoutePath = {
  template: '/v1/secrets/:ns/:path',
  otherwise: (method) => `secret.${method.toLowerCase()}`,
  ops: {
    GET: secretOp({ action: 'secret.read', access: on('read'), query: readQuery }, async (t, res, { core, query }) => {
      const q = query();
      const secrets = core.services().secrets;
      // The latest version as JSON text (kept with its cached version: secret-service.ts), this response's own copy.
      if (q.version === undefined && !isConditional(res.req)) return sendOwnedJson(res, await secrets.readLatestJson(t.namespace, t.path, q.min_version));
      sendJson(res.req, res, await secrets.read(t.namespace, t.path, q.version, q.min_version));
    }),
    // A write is one transaction: its audit intent commits with it (one group commit less per write).
    PUT: secretOp({ action: 'secret.write', access: on(['create', 'update']), query: emptyQuery, body: writeSecretBody, intentInTransaction: true }, (t, res, ctx) => write(t, res, ctx)),
    POST: secretOp({ action: 'secret.write', access: on(['create', 'update']), query: emptyQuery, body: writeSecretBody, intentInTransaction: true }, (t, res, ctx) => write(t, res, ctx)),
    DELETE: secretOp({ action: 'secret.delete', access: on('delete'), query: emptyQuery }, async (t, res, { core }) => {
      res.json(await core.services().secrets.changeVersions(t.namespace, t.path, 'delete'));
    }),
  },
};

/**
 * `update` writes anything; `create` alone writes only secrets that do not exist yet
 * (enforced atomically as a cas=0 write, so a race cannot turn it into an update).
 */
async function write(t: Target, res: Response, { core, body: parse, intentInChange }: RouteContext<unknown, ReturnType<typeof writeSecretBody.parse>, Target>) {
  const secrets = core.services().secrets;
  // Declared on(['create', 'update']): one of them is held, checked before the body was parsed.
  const canUpdate = isAllowed(principalOf(res), 'update', t.namespace, t.path);
  const body = parse();
  // sendJson: res.json's bytes without express's send machinery (a write is as hot as a read).
  if (canUpdate) {
    sendJson(res.req, res, await secrets.write(t.namespace, t.path, body, intentInChange));
    return;
  }
  try {
    sendJson(res.req, res, await secrets.write(t.namespace, t.path, { ...body, cas: 0 }, intentInChange));
  } catch (err) {
    if (err instanceof CofferError && err.code === 'cas_mismatch') throw denied('update', t.namespace, t.path);
    throw err;
  }
}

const FOLDER: RoutePath = {
  template: '/v1/secrets/:ns/:folder/',
  ops: {
    GET: secretOp(
      { action: 'secret.list', access: on('list'), query: ({ maxPageSize }) => pageQuery(maxPageSize) },
      async (t, res, { core, maxPageSize, query }) => {
        const q = query();
        const principal = principalOf(res);
        res.json(
          await core.services().secrets.list(t.namespace, t.path, { limit: q.limit ?? maxPageSize, after: decodeCursor(q.cursor) }, q.recursive === 'true', (path) =>
            isAllowed(principal, 'list', t.namespace, path),
          ),
        );
      },
    ),
  },
};

/** `…/{path}:{action}`, by action. */
const ACTIONS = new Map<string, RoutePath>(
  (
    [
      ['versions', 'GET', secretOp({ action: 'secret.history', access: on('list'), query: emptyQuery }, async (t, res, { core }) => {
        res.json(await core.services().secrets.history(t.namespace, t.path));
      })],
      ['rollback', 'POST', secretOp({ action: 'secret.rollback', access: on('update'), body: rollbackBody }, async (t, res, { core, body: parse }) => {
        const body = parse();
        res.json(await core.services().secrets.rollback(t.namespace, t.path, body.version, body.cas));
      })],
      ['delete', 'POST', versionOp('delete', 'delete')],
      ['undelete', 'POST', versionOp('undelete', 'delete')],
      ['destroy', 'POST', versionOp('destroy', 'destroy')],
      ['purge', 'POST', secretOp({ action: 'secret.purge', access: on('destroy') }, async (t, res, { core }) => {
        res.json(await core.services().secrets.purge(t.namespace, t.path));
      })],
    ] as const
  ).map(([action, method, operation]) => [action, { template: `/v1/secrets/:ns/:path:${action}`, ops: { [method]: operation } }]),
);

/** The namespace and path an audit entry names for a request no handler reached (as sent, bounded). */
function rawTarget(rest: string): { namespace: string; path: string; suffix: string | null } {
  // Every request below the mount asks (its audit entry, metrics): string slices, no arrays.
  const after = rest.slice(1);
  const slash = after.indexOf('/');
  const namespace = (slash === -1 ? after : after.slice(0, slash)).slice(0, 64);
  let path = slash === -1 ? '' : after.slice(slash + 1, slash + 1 + 600);
  let suffix: string | null = null;
  const colon = path.lastIndexOf(':');
  if (colon !== -1) {
    suffix = path.slice(colon + 1);
    path = path.slice(0, colon);
  }
  return { namespace, path, suffix };
}

/** The label of `/v1/secrets` + `rest`: `ns`, `ns/folder/`, `ns/a/b`, `ns/a/b:action`. */
function secretsTemplate(rest: string): string {
  const after = rest.startsWith('/') ? rest.slice(1) : rest;
  const slash = after.indexOf('/');
  let path = slash === -1 ? '' : after.slice(slash + 1);
  const colon = path.lastIndexOf(':');
  let action: string | null = null;
  if (colon !== -1) {
    action = path.slice(colon + 1);
    path = path.slice(0, colon);
  }
  if (path === '' || path.endsWith('/')) return action === null ? FOLDER.template : '/v1/secrets/:ns/:folder/:*';
  if (action === null) return SECRET.template;
  return ACTIONS.get(action)?.template ?? '/v1/secrets/:ns/:path:*';
}

/** A request below the mount that names nothing (`/v1/secrets`, `/v1/bulk`). */
const bare = (template: string, pathname: string): OwnMatch => ({ template, path: undefined, otherwise: 'unknown', namespace: null, auditPath: pathname.slice(0, 256) });

export const secretsMount: Mount = {
  prefix: '/v1/secrets',
  guard: 'token',
  unknown: { action: 'unknown' },
  paths: [SECRET, FOLDER, ...ACTIONS.values()],
  own: {
    match(rest, pathname) {
      const template = secretsTemplate(rest);
      if (rest === '') return bare(template, pathname);
      const { namespace, path, suffix } = rawTarget(rest);
      if (suffix !== null) return { template, path: ACTIONS.get(suffix), otherwise: `secret.${suffix}`, namespace, auditPath: path };
      return { template, path: path === '' || path.endsWith('/') ? FOLDER : SECRET, otherwise: '', namespace, auditPath: path };
    },
    dispatch: (serve) => (req, res) => {
      const t = parseTarget(req.path);
      auditTarget(res, t.namespace, t.path);
      if (t.folder && t.action !== null) throw new CofferError('not_found', 'actions apply to secrets, not folders');
      const path = t.folder ? FOLDER : t.action === null ? SECRET : ACTIONS.get(t.action);
      if (!path) throw new CofferError('not_found', `unknown action ":${t.action}"`);
      targets.set(req, t);
      return serve(req, res, path, req.method);
    },
  },
};

/** GET /v1/bulk/{namespace}/{folder/}: every readable latest value under the folder, in one call, and the names withheld. */
const BULK: RoutePath = {
  template: '/v1/bulk/:ns/:folder',
  ops: {
    GET: op({
      action: 'secret.bulk_read',
      // A bulk read is a listing of the folder plus a read of each secret in it: it needs `list`
      // on the folder, returns the secrets the caller may `read` and names those it may only list.
      access: on('list'),
      query: ({ maxPageSize }) => pageQuery(maxPageSize).omit({ recursive: true }),
      target: (req, res) => {
        const t = parseTarget(req.path);
        auditTarget(res, t.namespace, t.path);
        if (!t.folder || t.action !== null) throw badRequest('bulk reads take a folder: /v1/bulk/{namespace}/{folder/}');
        return t;
      },
      handler: async (_req, res, { core, maxPageSize, query, target: t }) => {
        const principal = principalOf(res);
        const q = query();
        const body = await core.services().secrets.bulkRead(t.namespace, t.path, { limit: q.limit ?? maxPageSize, after: decodeCursor(q.cursor) }, {
          mayRead: (path) => isAllowed(principal, 'read', t.namespace, path),
          mayList: (path) => isAllowed(principal, 'list', t.namespace, path),
        });
        // The page is JSON text already (see bulkRead); the same headers as res.json. Its
        // plaintext is zeroed once the socket has taken it (or the response is abandoned).
        if (!res.get('Content-Type')) res.set('Content-Type', 'application/json; charset=utf-8');
        res.once('close', () => body.fill(0));
        res.send(body);
      },
    }),
  },
};

export const bulkMount: Mount = {
  prefix: '/v1/bulk',
  guard: 'token',
  unknown: { action: 'unknown' },
  paths: [BULK],
  own: {
    match(rest, pathname) {
      if (rest === '') return bare(BULK.template, pathname);
      const { namespace, path } = rawTarget(rest);
      return { template: BULK.template, path: BULK, otherwise: '', namespace, auditPath: path };
    },
    // The method is checked before the path (405 for anything but GET, whatever the path).
    dispatch: (serve) => (req, res) => serve(req, res, BULK, req.method),
  },
};
