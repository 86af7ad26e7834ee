/** /v1/sys/policies: path policies (server-wide admin), and what a caller may do on a path. */
import { Router } from 'express';
import { z } from 'zod';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { capabilitiesOn, isAdmin } from '../../policy/policy.js';
import { policyDocumentSchema } from '../../auth/policy-store.js';
import { principalOf } from '../auth.js';
import { emptyQuery } from '../schemas.js';

const denied = () => new CofferError('permission_denied', 'managing policies needs admin rights');
const capabilitiesBody = z.object({ namespace: z.string().min(1).max(63), path: z.string().max(1024).default('') }).strict();

export function policiesRouter(core: CofferCore): Router {
  const router = Router({ caseSensitive: true });

  router.get('/', async (req, res) => {
    if (!isAdmin(principalOf(res))) throw denied();
    emptyQuery.parse(req.query);
    res.json({ policies: await core.services().policies.list() });
  });
  router.put('/:name', async (req, res) => {
    if (!isAdmin(principalOf(res))) throw denied();
    const doc = policyDocumentSchema.parse(req.body);
    const { created } = await core.services().policies.put(req.params.name, doc);
    res.status(created ? 201 : 200).json(await core.services().policies.read(req.params.name));
  });
  router.get('/:name', async (req, res) => {
    if (!isAdmin(principalOf(res))) throw denied();
    emptyQuery.parse(req.query);
    res.json(await core.services().policies.read(req.params.name));
  });
  router.delete('/:name', async (req, res) => {
    if (!isAdmin(principalOf(res))) throw denied();
    await core.services().policies.delete(req.params.name);
    res.status(204).end();
  });
  return router;
}

/** POST /v1/sys/capabilities-self: the caller's capabilities on one namespace path (no admin needed). */
export function capabilitiesRouter(): Router {
  const router = Router({ caseSensitive: true });
  router.post('/', (req, res) => {
    const body = capabilitiesBody.parse(req.body);
    res.json({ namespace: body.namespace, path: body.path, capabilities: capabilitiesOn(principalOf(res), body.namespace, body.path) });
  });
  return router;
}
