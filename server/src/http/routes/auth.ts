/** /v1/auth/token: look up and revoke the calling token. Login methods come with identities. */
import { Router } from 'express';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { principalOf } from '../auth.js';

export function authRouter(core: CofferCore): Router {
  const router = Router();

  router.get('/token/lookup-self', async (_req, res) => {
    const principal = principalOf(res);
    const info = await core.services().tokens.lookup(principal.accessor);
    if (!info) throw new CofferError(401, 'unauthenticated', 'token is invalid or revoked');
    res.json(info);
  });

  router.post('/token/revoke-self', async (_req, res) => {
    await core.services().tokens.revoke(principalOf(res).accessor);
    res.status(204).end();
  });

  return router;
}
