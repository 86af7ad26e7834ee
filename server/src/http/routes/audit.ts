/** /v1/sys/audit: search, verify the hash chain, and HMAC a value to search for. Admin only. */
import { Router } from 'express';
import { z } from 'zod';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { isAdmin } from '../../policy/policy.js';
import { principalOf } from '../auth.js';
import { emptyQuery } from '../schemas.js';

const searchQuery = z
  .object({
    identity: z.string().max(256).optional(),
    namespace: z.string().max(64).optional(),
    path: z.string().max(600).optional(),
    action: z.string().max(64).optional(),
    outcome: z.enum(['success', 'denied', 'error', 'unknown']).optional(),
    since: z.iso.datetime({ offset: true }).transform((v) => new Date(v)).optional(),
    until: z.iso.datetime({ offset: true }).transform((v) => new Date(v)).optional(),
    cursor: z.string().regex(/^[0-9]{1,15}$/, 'cursor is a sequence number').transform(Number).optional(),
    order: z.enum(['asc', 'desc']).default('desc'),
    limit: z.string().regex(/^[1-9][0-9]{0,3}$/).transform(Number).refine((n) => n <= 1000, 'limit is at most 1000').optional(),
  })
  .strict();

const hashBody = z.object({ input: z.string().max(1024 * 1024) }).strict();

export function auditRouter(core: CofferCore): Router {
  const router = Router({ caseSensitive: true });
  router.use((_req, res, next) => {
    if (!isAdmin(principalOf(res))) return next(new CofferError('permission_denied', 'the audit log needs admin rights'));
    next();
  });

  router.get('/', async (req, res) => {
    const q = searchQuery.parse(req.query);
    res.json(await core.audit.search({ ...q, limit: q.limit ?? 100 }));
  });

  router.get('/verify', async (req, res) => {
    emptyQuery.parse(req.query);
    res.json(await core.audit.verify());
  });

  router.post('/hash', (req, res) => {
    const { input } = hashBody.parse(req.body);
    const hash = core.audit.hmac(input);
    if (!hash) throw new CofferError('sealed', 'Coffer is sealed');
    res.json({ hash });
  });

  return router;
}
