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
 * a secret name. The path is parsed here rather than by the router so that a
 * trailing slash (folder) and percent-encoding are handled exactly.
 */
import { Router, type Request, type Response } from 'express';
import type { CofferCore } from '../../core.js';
import { CofferError, badRequest } from '../../errors.js';
import { isAllowed, type Capability } from '../../policy/policy.js';
import { checkFolder, checkNamespaceName, checkSecretPath } from '../../secrets/names.js';
import { decodeCursor } from '../../secrets/pagination.js';
import type { VersionAction } from '../../secrets/secret-service.js';
import { principalOf } from '../auth.js';
import { auditTarget } from '../audit.js';
import { methodNotAllowed } from '../respond.js';
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

const denied = (capability: Capability, t: Target) =>
  new CofferError('permission_denied', `permission denied: ${capability} on ${t.namespace}:${t.path || '/'}`);

export function secretsRouter(core: CofferCore, maxPageSize: number): Router {
  const router = Router({ caseSensitive: true });
  const listQuery = pageQuery(maxPageSize);

  const authorize = (res: Response, capability: Capability, t: Target) => {
    if (!isAllowed(principalOf(res), capability, t.namespace, t.path)) throw denied(capability, t);
  };

  router.use(async (req: Request, res: Response) => {
    const t = parseTarget(req.path);
    auditTarget(res, t.namespace, t.path);
    const secrets = core.services().secrets;

    if (t.folder) {
      if (t.action !== null) throw new CofferError('not_found', 'actions apply to secrets, not folders');
      if (req.method !== 'GET') throw methodNotAllowed(['GET']);
      authorize(res, 'list', t);
      const q = listQuery.parse(req.query);
      const principal = principalOf(res);
      res.json(
        await secrets.list(t.namespace, t.path, { limit: q.limit ?? maxPageSize, after: decodeCursor(q.cursor) }, q.recursive === 'true', (path) =>
          isAllowed(principal, 'list', t.namespace, path),
        ),
      );
      return;
    }

    switch (t.action) {
      case null:
        switch (req.method) {
          case 'GET': {
            authorize(res, 'read', t);
            const q = readQuery.parse(req.query);
            res.json(await secrets.read(t.namespace, t.path, q.version));
            return;
          }
          case 'PUT':
          case 'POST': {
            // `update` writes anything; `create` alone writes only secrets that do not exist yet
            // (enforced atomically as a cas=0 write, so a race cannot turn it into an update).
            const principal = principalOf(res);
            const canUpdate = isAllowed(principal, 'update', t.namespace, t.path);
            if (!canUpdate && !isAllowed(principal, 'create', t.namespace, t.path)) throw denied('create', t);
            emptyQuery.parse(req.query);
            const body = writeSecretBody.parse(req.body);
            if (canUpdate) {
              res.json(await secrets.write(t.namespace, t.path, body));
              return;
            }
            try {
              res.json(await secrets.write(t.namespace, t.path, { ...body, cas: 0 }));
            } catch (err) {
              if (err instanceof CofferError && err.code === 'cas_mismatch') throw denied('update', t);
              throw err;
            }
            return;
          }
          case 'DELETE':
            authorize(res, 'delete', t);
            emptyQuery.parse(req.query);
            res.json(await secrets.changeVersions(t.namespace, t.path, 'delete'));
            return;
          default:
            throw methodNotAllowed(['GET', 'PUT', 'POST', 'DELETE']);
        }
      case 'versions':
        if (req.method !== 'GET') throw methodNotAllowed(['GET']);
        authorize(res, 'list', t);
        emptyQuery.parse(req.query);
        res.json(await secrets.history(t.namespace, t.path));
        return;
      case 'rollback': {
        if (req.method !== 'POST') throw methodNotAllowed(['POST']);
        authorize(res, 'update', t);
        const body = rollbackBody.parse(req.body);
        res.json(await secrets.rollback(t.namespace, t.path, body.version, body.cas));
        return;
      }
      case 'delete':
      case 'undelete':
      case 'destroy': {
        if (req.method !== 'POST') throw methodNotAllowed(['POST']);
        authorize(res, t.action === 'destroy' ? 'destroy' : 'delete', t);
        const body = versionsBody.parse(req.body ?? {});
        res.json(await secrets.changeVersions(t.namespace, t.path, t.action as VersionAction, body.versions));
        return;
      }
      case 'purge':
        if (req.method !== 'POST') throw methodNotAllowed(['POST']);
        authorize(res, 'destroy', t);
        res.json(await secrets.purge(t.namespace, t.path));
        return;
      default:
        throw new CofferError('not_found', `unknown action ":${t.action}"`);
    }
  });

  return router;
}

/** GET /v1/bulk/{namespace}/{folder/}: every readable latest value under the folder, in one call. */
export function bulkRouter(core: CofferCore, maxPageSize: number): Router {
  const router = Router({ caseSensitive: true });
  const query = pageQuery(maxPageSize).omit({ recursive: true });
  router.use(async (req: Request, res: Response) => {
    if (req.method !== 'GET') throw methodNotAllowed(['GET']);
    const t = parseTarget(req.path);
    auditTarget(res, t.namespace, t.path);
    if (!t.folder || t.action !== null) throw badRequest('bulk reads take a folder: /v1/bulk/{namespace}/{folder/}');
    const principal = principalOf(res);
    // A bulk read is a listing of the folder plus a read of each secret in it: it needs `list`
    // on the folder and returns only the secrets the caller may `read`.
    if (!isAllowed(principal, 'list', t.namespace, t.path)) throw denied('list', t);
    const q = query.parse(req.query);
    res.json(
      await core
        .services()
        .secrets.bulkRead(t.namespace, t.path, { limit: q.limit ?? maxPageSize, after: decodeCursor(q.cursor) }, (path) =>
          isAllowed(principal, 'read', t.namespace, path),
        ),
    );
  });
  return router;
}
