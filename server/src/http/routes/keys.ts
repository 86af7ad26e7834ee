/**
 * /v1/byok (bring your own key) and /v1/escrow (two-person escrow export).
 * Namespace-scoped operations need the admin capability on the namespace;
 * root key import needs server-wide admin. Every request is audited like any
 * other: the response (with any key material in it) leaves only once its entry
 * is durable. Not inside the change's transaction: an append there races the
 * audit log's group commit for the next sequence number under load.
 */
import type { Request } from 'express';
import { z } from 'zod';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { IMPORT_ALGORITHMS } from '../../kms/byok.js';
import { ESCROW_ALGORITHMS, ESCROW_MAX_TTL_SECONDS } from '../../kms/escrow.js';
import { checkNamespaceName } from '../../secrets/names.js';
import { principalOf } from '../auth.js';
import { nameParam, namespaceParam, op, single, type Access, type Mount } from '../route.js';
import { versionNumber } from '../schemas.js';

const importParamsQuery = z.object({ algorithm: z.enum(IMPORT_ALGORITHMS).default('RSAES_OAEP_SHA_256') }).strict();
const importBody = z
  .object({
    import_token: z.string().min(1).max(64),
    encrypted_key_material: z.string().min(1).max(4096),
  })
  .strict();
const escrowRequestBody = z
  .object({
    namespace: z.string().min(1).max(63),
    kek_version: versionNumber.optional(),
    algorithm: z.enum(ESCROW_ALGORITHMS).default('RSAES_OAEP_SHA_256'),
    public_key: z.string().min(1).max(16_384),
    ttl_seconds: z.number().int().min(60).max(ESCROW_MAX_TTL_SECONDS).optional(),
  })
  .strict();
const emptyBody = z.object({}).strict();
const escrowListQuery = z.object({ namespace: z.string().min(1).max(63) }).strict();
const emptyQuery = z.object({}).strict();

const denied = (what: string) => new CofferError('permission_denied', `${what} needs the admin capability`);
/** The admin capability on the namespace the request names (in its path, its body, or the escrow request it names). */
const NAMESPACE_ADMIN: Access = { kind: 'scoped', capability: 'admin', denied: (_c, namespace) => denied(`namespace "${namespace}"`) };
/** The escrow request `:name` is the id of (404 unless it exists), and its namespace. */
const byRequest = async (_inputs: unknown, req: Request, { core }: { core: CofferCore }) => {
  const found = await core.services().escrow.get(nameParam(req));
  return { namespace: found.namespace, found };
};
const ROOT_ADMIN: Access = { kind: 'admin', denied: 'importing the root key needs the admin capability' };

export const byokMount: Mount = {
  prefix: '/v1/byok',
  guard: 'token',
  names: { as: 'namespace', max: 64 },
  unknown: { action: 'byok.unknown' },
  paths: [
    single('/v1/byok/namespaces/:name/import-params', 'GET', op({
      action: 'byok.import_params',
      access: NAMESPACE_ADMIN,
      query: importParamsQuery,
      // Creates a one-time wrapping key.
      changesState: true,
      target: namespaceParam,
      handler: async (_req, res, { core, query, target: { namespace: ns } }) => {
        const q = query();
        res.json(await core.services().byok.importParams({ kind: 'namespace', namespace: ns }, q.algorithm, principalOf(res).identity));
      },
    })),
    single('/v1/byok/namespaces/:name/import', 'POST', op({
      action: 'byok.import',
      access: NAMESPACE_ADMIN,
      body: importBody,
      bodyMayBeAbsent: true,
      target: namespaceParam,
      handler: async (_req, res, { core, body: parse, target: { namespace: ns } }) => {
        const body = parse();
        const result = await core.services().byok.importNamespaceKey(ns, body.import_token, body.encrypted_key_material);
        res.json(result);
      },
    })),
    single('/v1/byok/root/import-params', 'GET', op({
      action: 'byok.root.import_params',
      access: ROOT_ADMIN,
      query: importParamsQuery,
      changesState: true,
      handler: async (_req, res, { core, query }) => {
        const q = query();
        res.json(await core.services().byok.importParams({ kind: 'root' }, q.algorithm, principalOf(res).identity));
      },
    })),
    single('/v1/byok/root/import', 'POST', op({
      action: 'byok.root.import',
      access: ROOT_ADMIN,
      body: importBody,
      bodyMayBeAbsent: true,
      handler: async (_req, res, { core, body: parse }) => {
        const body = parse();
        const result = await core.services().byok.importRootKey(body.import_token, body.encrypted_key_material);
        res.json(result);
      },
    })),
  ],
};

/** The escrow request id is the `:name`; the namespace is named once the request is loaded. */
export const escrowMount: Mount = {
  prefix: '/v1/escrow',
  guard: 'token',
  names: { as: 'path', max: 64 },
  unknown: { action: 'escrow.unknown' },
  paths: [
    {
      template: '/v1/escrow/requests',
      otherwise: 'escrow.request',
      ops: {
        POST: op({
          action: 'escrow.request',
          access: NAMESPACE_ADMIN,
          body: escrowRequestBody,
          bodyMayBeAbsent: true,
          targetOf: ({ body }) => ({ namespace: checkNamespaceName(body.namespace) }),
          handler: async (_req, res, { core, body: parse, target: { namespace: ns } }) => {
            const body = parse();
            const created = await core.services().escrow.request(principalOf(res).identity, {
              namespace: ns,
              kekVersion: body.kek_version,
              algorithm: body.algorithm,
              publicKey: body.public_key,
              ttlSeconds: body.ttl_seconds,
            });
            res.status(201).json(created);
          },
        }),
        GET: op({
          action: 'escrow.list',
          access: NAMESPACE_ADMIN,
          query: escrowListQuery,
          targetOf: ({ query }) => ({ namespace: checkNamespaceName(query.namespace) }),
          handler: async (_req, res, { core, target: { namespace: ns } }) => {
            res.json({ requests: await core.services().escrow.list(ns) });
          },
        }),
      },
    },
    single('/v1/escrow/requests/:name', 'GET', op({
      action: 'escrow.read',
      access: NAMESPACE_ADMIN,
      query: emptyQuery,
      targetOf: byRequest,
      handler: (_req, res, { target: { found } }) => {
        res.json(found);
      },
    })),
    single('/v1/escrow/requests/:name/approve', 'POST', op({
      action: 'escrow.approve',
      access: NAMESPACE_ADMIN,
      body: emptyBody,
      bodyMayBeAbsent: true,
      targetOf: byRequest,
      handler: async (_req, res, { core, target: { found } }) => {
        const approved = await core.services().escrow.approve(found.id, principalOf(res).identity);
        res.json(approved);
      },
    })),
    single('/v1/escrow/requests/:name/download', 'POST', op({
      action: 'escrow.download',
      access: NAMESPACE_ADMIN,
      body: emptyBody,
      bodyMayBeAbsent: true,
      targetOf: byRequest,
      handler: async (_req, res, { core, target: { found } }) => {
        const downloaded = await core.services().escrow.download(found.id, principalOf(res).identity);
        res.json(downloaded);
      },
    })),
  ],
};
