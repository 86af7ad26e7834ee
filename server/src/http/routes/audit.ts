/** /v1/sys/audit: search, verify the hash chain, and HMAC a value to search for. Admin only. */
import { z } from 'zod';
import { CofferError } from '../../errors.js';
import { op, type Mount } from '../route.js';
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

/** Everything under the mount, known path or not, needs admin rights. */
const ADMIN = { kind: 'admin', denied: 'the audit log needs admin rights' } as const;

export const auditMount: Mount = {
  prefix: '/v1/sys/audit',
  guard: ADMIN,
  unknown: { action: 'sys.unknown' },
  paths: [
    {
      template: '/v1/sys/audit',
      ops: {
        GET: op({
          action: 'sys.audit',
          access: ADMIN,
          query: searchQuery,
          handler: async (_req, res, { core, query }) => {
            const q = query();
            res.json(await core.audit.search({ ...q, limit: q.limit ?? 100 }));
          },
        }),
      },
    },
    {
      template: '/v1/sys/audit/verify',
      ops: {
        GET: op({
          action: 'sys.audit.verify',
          access: ADMIN,
          query: emptyQuery,
          handler: async (_req, res, { core, query }) => {
            query();
            res.json(await core.audit.verify());
          },
        }),
      },
    },
    {
      template: '/v1/sys/audit/hash',
      ops: {
        POST: op({
          action: 'sys.audit.hash',
          access: ADMIN,
          body: hashBody,
          handler: (_req, res, { core, body }) => {
            const { input } = body();
            const hash = core.audit.hmac(input);
            if (!hash) throw new CofferError('sealed', 'Coffer is sealed');
            res.json({ hash });
          },
        }),
      },
    },
  ],
};
