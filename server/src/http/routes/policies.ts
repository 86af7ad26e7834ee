/** /v1/sys/policies: path policies (server-wide admin), and what a caller may do on a path. */
import { z } from 'zod';
import { capabilitiesOn } from '../../policy/policy.js';
import { policyDocumentSchema } from '../../auth/policy-store.js';
import { principalOf } from '../auth.js';
import { nameParam, op, type Mount } from '../route.js';
import { emptyQuery } from '../schemas.js';

const ADMIN = { kind: 'admin', denied: 'managing policies needs admin rights' } as const;
const capabilitiesBody = z.object({ namespace: z.string().min(1).max(63), path: z.string().max(1024).default('') }).strict();

export const policiesMount: Mount = {
  prefix: '/v1/sys/policies',
  guard: 'token',
  names: { as: 'path', max: 128 },
  unknown: { action: 'sys.unknown' },
  paths: [
    {
      template: '/v1/sys/policies',
      otherwise: 'sys.policies',
      ops: {
        GET: op({
          action: 'sys.policies.list',
          access: ADMIN,
          query: emptyQuery,
          handler: async (_req, res, { core, query }) => {
            query();
            res.json({ policies: await core.services().policies.list() });
          },
        }),
      },
    },
    {
      template: '/v1/sys/policies/:name',
      otherwise: 'sys.policies.write',
      ops: {
        PUT: op({
          action: 'sys.policies.write',
          access: ADMIN,
          body: policyDocumentSchema,
          handler: async (req, res, { core, body }) => {
            const doc = body();
            const { created } = await core.services().policies.put(nameParam(req), doc);
            res.status(created ? 201 : 200).json(await core.services().policies.read(nameParam(req)));
          },
        }),
        GET: op({
          action: 'sys.policies.read',
          access: ADMIN,
          query: emptyQuery,
          handler: async (req, res, { core, query }) => {
            query();
            res.json(await core.services().policies.read(nameParam(req)));
          },
        }),
        DELETE: op({
          action: 'sys.policies.delete',
          access: ADMIN,
          handler: async (req, res, { core }) => {
            await core.services().policies.delete(nameParam(req));
            res.status(204).end();
          },
        }),
      },
    },
  ],
};

/** POST /v1/sys/capabilities-self: the caller's capabilities on one namespace path (no admin needed). */
export const capabilitiesMount: Mount = {
  prefix: '/v1/sys/capabilities-self',
  guard: 'token',
  unknown: { action: 'sys.unknown' },
  paths: [
    {
      template: '/v1/sys/capabilities-self',
      ops: {
        POST: op({
          action: 'sys.capabilities-self',
          access: { kind: 'token' },
          body: capabilitiesBody,
          handler: (_req, res, ctx) => {
            const body = ctx.body();
            res.json({ namespace: body.namespace, path: body.path, capabilities: capabilitiesOn(principalOf(res), body.namespace, body.path) });
          },
        }),
      },
    },
  ],
};
