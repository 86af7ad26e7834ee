/**
 * /v1/byok (bring your own key) and /v1/escrow (two-person escrow export).
 * Namespace-scoped operations need the admin capability on the namespace;
 * root key import needs server-wide admin. Every request is audited like any
 * other: the response (with any key material in it) leaves only once its entry
 * is durable. Not inside the change's transaction: an append there races the
 * audit log's group commit for the next sequence number under load.
 */
import { Router, type Response } from 'express';
import { z } from 'zod';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { IMPORT_ALGORITHMS, type ByokService } from '../../kms/byok.js';
import { ESCROW_ALGORITHMS, ESCROW_MAX_TTL_SECONDS, type EscrowService } from '../../kms/escrow.js';
import { isAdmin, isAllowed } from '../../policy/policy.js';
import { checkNamespaceName } from '../../secrets/names.js';
import { principalOf } from '../auth.js';
import { auditTarget } from '../audit.js';
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

function requireNamespaceAdmin(res: Response, namespace: string): void {
  if (!isAllowed(principalOf(res), 'admin', namespace, '')) throw denied(`namespace "${namespace}"`);
}

export function byokRouter(core: CofferCore): Router {
  const router = Router({ caseSensitive: true });
  const byok = (): ByokService => core.services().byok;

  router.get('/namespaces/:ns/import-params', async (req, res) => {
    const ns = checkNamespaceName(req.params.ns as string);
    auditTarget(res, ns);
    requireNamespaceAdmin(res, ns);
    const q = importParamsQuery.parse(req.query);
    res.json(await byok().importParams({ kind: 'namespace', namespace: ns }, q.algorithm, principalOf(res).identity));
  });

  router.post('/namespaces/:ns/import', async (req, res) => {
    const ns = checkNamespaceName(req.params.ns as string);
    auditTarget(res, ns);
    requireNamespaceAdmin(res, ns);
    const body = importBody.parse(req.body ?? {});
    const result = await byok().importNamespaceKey(ns, body.import_token, body.encrypted_key_material);
    res.json(result);
  });

  router.get('/root/import-params', async (req, res) => {
    if (!isAdmin(principalOf(res))) throw denied('importing the root key');
    const q = importParamsQuery.parse(req.query);
    res.json(await byok().importParams({ kind: 'root' }, q.algorithm, principalOf(res).identity));
  });

  router.post('/root/import', async (req, res) => {
    if (!isAdmin(principalOf(res))) throw denied('importing the root key');
    const body = importBody.parse(req.body ?? {});
    const result = await byok().importRootKey(body.import_token, body.encrypted_key_material);
    res.json(result);
  });

  return router;
}

export function escrowRouter(core: CofferCore): Router {
  const router = Router({ caseSensitive: true });
  const escrow = (): EscrowService => core.services().escrow;

  router.post('/requests', async (req, res) => {
    const body = escrowRequestBody.parse(req.body ?? {});
    const ns = checkNamespaceName(body.namespace);
    auditTarget(res, ns);
    requireNamespaceAdmin(res, ns);
    const created = await escrow().request(principalOf(res).identity, {
      namespace: ns,
      kekVersion: body.kek_version,
      algorithm: body.algorithm,
      publicKey: body.public_key,
      ttlSeconds: body.ttl_seconds,
    });
    res.status(201).json(created);
  });

  router.get('/requests', async (req, res) => {
    const q = escrowListQuery.parse(req.query);
    const ns = checkNamespaceName(q.namespace);
    auditTarget(res, ns);
    requireNamespaceAdmin(res, ns);
    res.json({ requests: await escrow().list(ns) });
  });

  router.get('/requests/:id', async (req, res) => {
    emptyQuery.parse(req.query);
    const found = await escrow().get(req.params.id as string);
    auditTarget(res, found.namespace);
    requireNamespaceAdmin(res, found.namespace);
    res.json(found);
  });

  router.post('/requests/:id/approve', async (req, res) => {
    emptyBody.parse(req.body ?? {});
    const found = await escrow().get(req.params.id as string);
    auditTarget(res, found.namespace);
    requireNamespaceAdmin(res, found.namespace);
    const approved = await escrow().approve(found.id, principalOf(res).identity);
    res.json(approved);
  });

  router.post('/requests/:id/download', async (req, res) => {
    emptyBody.parse(req.body ?? {});
    const found = await escrow().get(req.params.id as string);
    auditTarget(res, found.namespace);
    requireNamespaceAdmin(res, found.namespace);
    const downloaded = await escrow().download(found.id, principalOf(res).identity);
    res.json(downloaded);
  });

  return router;
}
