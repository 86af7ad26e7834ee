/** /v1/sys: initialise, unseal, seal, status, health. Only `seal` needs a token. */
import { Router, type RequestHandler } from 'express';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { isAdmin } from '../../policy/policy.js';
import { principalOf } from '../auth.js';
import { emptyQuery, initBody, unsealBody } from '../schemas.js';

export function sysRouter(core: CofferCore, requireToken: RequestHandler[]): Router {
  const router = Router();

  router.get('/seal-status', (req, res) => {
    emptyQuery.parse(req.query);
    res.json(core.status());
  });

  // Load-balancer friendly: 200 ready, 503 sealed, 501 not initialised (Vault's codes).
  router.get('/health', (req, res) => {
    emptyQuery.parse(req.query);
    const s = core.status();
    const status = !s.initialized ? 501 : s.sealed ? 503 : 200;
    res.status(status).json({ initialized: s.initialized, sealed: s.sealed, server_time_utc: Math.floor(Date.now() / 1000) });
  });

  router.post('/init', async (req, res) => {
    const body = initBody.parse(req.body ?? {});
    const result = await core.init(body.shares, body.threshold);
    res.status(200).json(result);
  });

  router.post('/unseal', async (req, res) => {
    const body = unsealBody.parse(req.body);
    res.json('reset' in body ? await core.resetUnseal() : await core.unseal(body.share));
  });

  router.post('/seal', ...requireToken, async (_req, res) => {
    if (!isAdmin(principalOf(res))) throw new CofferError(403, 'permission_denied', 'sealing needs admin rights');
    res.json(await core.seal());
  });

  return router;
}
