/** /v1/namespaces: create, list, get, delete. Administration needs admin rights. */
import { Router, type Response } from 'express';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { isAdmin, isAllowed } from '../../policy/policy.js';
import { decodeCursor } from '../../secrets/pagination.js';
import { checkNamespaceName } from '../../secrets/names.js';
import { principalOf } from '../auth.js';
import { auditTarget } from '../audit.js';
import { createNamespaceBody, deleteNamespaceQuery, emptyQuery, pageQuery, rotateKekBody, shredBody, updateNamespaceBody } from '../schemas.js';

const denied = () => new CofferError('permission_denied', 'permission denied');

/** The namespace a `/:name` route serves, checked, and named in the request's audit entry. */
const routedName = (res: Response, raw: string): string => {
  const name = checkNamespaceName(raw);
  auditTarget(res, name);
  return name;
};

export function namespacesRouter(core: CofferCore, maxPageSize: number): Router {
  const router = Router({ caseSensitive: true });
  const listQuery = pageQuery(maxPageSize);

  // A namespace admin (`admin` on a namespace glob) may create, read and delete the namespaces it matches.
  router.post('/', async (req, res) => {
    const body = createNamespaceBody.parse(req.body);
    auditTarget(res, body.name);
    if (!isAllowed(principalOf(res), 'admin', body.name, '')) throw denied();
    res.status(201).json(await core.services().namespaces.create(body.name, body.description, body.rotation_period));
  });

  // Everyone may list; a non-admin sees only the namespaces it can list (pages stay full, and a
  // cursor never names a namespace the caller was not shown).
  router.get('/', async (req, res) => {
    const principal = principalOf(res);
    const q = listQuery.omit({ recursive: true }).parse(req.query);
    const admin = isAdmin(principal);
    res.json(
      await core
        .services()
        .namespaces.list({ limit: q.limit ?? maxPageSize, after: decodeCursor(q.cursor) }, (name) => admin || isAllowed(principal, 'list', name, '')),
    );
  });

  router.get('/:name', async (req, res) => {
    const name = routedName(res, req.params.name);
    if (!isAllowed(principalOf(res), 'list', name, '')) throw denied();
    emptyQuery.parse(req.query);
    res.json(await core.services().namespaces.get(name));
  });

  // Namespace-scoped administration (KEK lifecycle, shredding): the admin capability on the namespace.
  const requireNamespaceAdmin = (res: Response, name: string) => {
    if (!isAllowed(principalOf(res), 'admin', name, '')) throw denied();
  };

  router.patch('/:name', async (req, res) => {
    const name = routedName(res, req.params.name);
    requireNamespaceAdmin(res, name);
    emptyQuery.parse(req.query);
    const body = updateNamespaceBody.parse(req.body ?? {});
    res.json(await core.services().namespaces.update(name, { description: body.description, rotationPeriodSeconds: body.rotation_period }));
  });

  router.get('/:name/kek', async (req, res) => {
    const name = routedName(res, req.params.name);
    requireNamespaceAdmin(res, name);
    emptyQuery.parse(req.query);
    res.json(await core.services().kek.status(name));
  });

  router.post('/:name/kek/rotate', async (req, res) => {
    const name = routedName(res, req.params.name);
    requireNamespaceAdmin(res, name);
    emptyQuery.parse(req.query);
    rotateKekBody.parse(req.body ?? {});
    res.json(await core.services().namespaces.rotateKek(name));
  });

  router.post('/:name/shred', async (req, res) => {
    const name = routedName(res, req.params.name);
    requireNamespaceAdmin(res, name);
    emptyQuery.parse(req.query);
    const body = shredBody.parse(req.body ?? {});
    res.status(202).json(await core.services().kek.scheduleShred(name, body.pending_window_days));
  });

  router.delete('/:name/shred', async (req, res) => {
    const name = routedName(res, req.params.name);
    requireNamespaceAdmin(res, name);
    emptyQuery.parse(req.query);
    res.json(await core.services().kek.cancelShred(name));
  });

  router.delete('/:name', async (req, res) => {
    const name = routedName(res, req.params.name);
    if (!isAllowed(principalOf(res), 'admin', name, '')) throw denied();
    const q = deleteNamespaceQuery.parse(req.query);
    res.json(await core.services().namespaces.delete(name, q.force === 'true'));
  });

  return router;
}
