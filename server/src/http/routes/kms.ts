/**
 * /v1/kms: named keys of a namespace and what applications do with them
 * (issue 14). Paths mirror Vault's transit engine with the namespace in front:
 *
 *   GET    /v1/kms/random?bytes=N&format=base64|hex      any valid token
 *   GET    /v1/kms/{ns}/keys?limit&cursor                 list (any KMS capability on the whole namespace)
 *   POST   /v1/kms/{ns}/keys/{name}                       create            key-admin
 *   GET    /v1/kms/{ns}/keys/{name}                       read              any KMS capability on the key
 *   DELETE /v1/kms/{ns}/keys/{name}                       delete            key-admin
 *   POST   /v1/kms/{ns}/keys/{name}/config                configure         key-admin
 *   POST   /v1/kms/{ns}/keys/{name}/rotate                rotate            key-admin
 *   POST   /v1/kms/{ns}/keys/{name}/trim                  trim versions     key-admin
 *   GET    /v1/kms/{ns}/keys/{name}/import-params         BYOK wrapping key key-admin
 *   POST   /v1/kms/{ns}/keys/{name}/import                import a new key  key-admin
 *   POST   /v1/kms/{ns}/keys/{name}/import-version        import a version  key-admin
 *   POST   /v1/kms/{ns}/keys/{name}/export                wrapped export    key-admin
 *   POST   /v1/kms/{ns}/keys/{name}/export-requests       ask for approval  key-admin (approved at /v1/escrow/requests/{id}/approve)
 *   GET    /v1/kms/{ns}/public-key/{name}[?version=N]     PEM and JWK       verify
 *   POST   /v1/kms/{ns}/encrypt/{name}                    encrypt
 *   POST   /v1/kms/{ns}/decrypt/{name}                    decrypt
 *   POST   /v1/kms/{ns}/rewrap/{name}                     rewrap
 *   POST   /v1/kms/{ns}/datakey/plaintext/{name}          datakey
 *   POST   /v1/kms/{ns}/datakey/wrapped/{name}            datakey
 *   POST   /v1/kms/{ns}/sign/{name}                       sign
 *   POST   /v1/kms/{ns}/verify/{name}                     verify (a `signature`, or an `hmac` of an HMAC key)
 *   POST   /v1/kms/{ns}/hmac/{name}                       hmac
 *   POST   /v1/kms/{ns}/batch/{encrypt|decrypt|rewrap}/{name}   that operation's capability
 *
 * Every handler checks the capability on the key (namespace glob + key-name
 * glob) before it looks anything up: a caller without it gets 403 whether or
 * not the key exists. The operations change no stored state, so they record no
 * audit intent; their entry is still durable before the response leaves. The
 * entry names the key (path), the key version and, as an HMAC, the
 * associated data (audit/entry.ts) — never plaintext, ciphertext or key bytes.
 */
import type { Request, Response } from 'express';
import { z } from 'zod';
import {
  KMS_CAPABILITIES,
  KMS_DATAKEY_BITS,
  KMS_KEY_TYPES,
  KMS_MAX_BATCH_ITEMS,
  KMS_MAX_RANDOM_BYTES,
  kmsKeyNameProblem,
  type KmsBatchItem,
  type KmsBatchOperation,
} from '@coffer/sdk/api';
import { badRequest, CofferError } from '../../errors.js';
import { IMPORT_ALGORITHMS, MAX_NAMED_KEY_B64 } from '../../kms/byok.js';
import { ESCROW_ALGORITHMS } from '../../kms/escrow.js';
import { KeyTransfer } from '../../kms/named-keys/transfer.js';
import { maySeeKey } from '../../policy/kms.js';
import type { Capability } from '../../policy/policy.js';
import { decodeCursor } from '../../secrets/pagination.js';
import { checkNamespaceName } from '../../secrets/names.js';
import { principalOf } from '../auth.js';
import { auditTarget, auditVersion, op, single, type Access, type Mount, type Operation, type RouteContext, type RoutePath } from '../route.js';
import { emptyQuery, INT4_MAX, pageQuery, readQuery, versionNumber } from '../schemas.js';
import type { Services } from '../../vault/services.js';

const denied = (capability: Capability, namespace: string, key: string) =>
  new CofferError('permission_denied', key === '' ? `permission denied: no KMS capability on namespace "${namespace}"` : `permission denied: ${capability} on key "${key}" of namespace "${namespace}"`);
const on = (capability: Capability | readonly Capability[]): Access => ({ kind: 'scoped', capability, denied });
/** Seeing a key (its configuration, versions, public keys): any KMS capability on it. */
const ANY_KMS = on(KMS_CAPABILITIES);

// --- schemas -----------------------------------------------------------------
// Sizes are checked by the service (a plaintext over 64 KiB is a 413 that says to use a data key);
// these bounds only keep absurd strings from reaching it.
const b64 = z.string().max(1 << 24);
const value = z.string().max(1 << 24);

const createBody = z
  .object({
    type: z.enum(KMS_KEY_TYPES),
    exportable: z.boolean().optional(),
    export_locked: z.boolean().optional(),
    deletion_allowed: z.boolean().optional(),
    auto_rotate_period: z.number().int().min(0).max(INT4_MAX).optional(),
    hsm: z.boolean().optional(),
  })
  .strict();
const configBody = z
  .object({
    exportable: z.boolean().optional(),
    export_locked: z.boolean().optional(),
    deletion_allowed: z.boolean().optional(),
    min_decryption_version: versionNumber.optional(),
    min_encryption_version: z.number().int().min(0).max(INT4_MAX).optional(),
    auto_rotate_period: z.number().int().min(0).max(INT4_MAX).optional(),
  })
  .strict();
const trimBody = z.object({ min_available_version: versionNumber }).strict();
const wrappedMaterial = { import_token: z.string().min(1).max(64), encrypted_key_material: z.string().min(1).max(MAX_NAMED_KEY_B64) };
const importBody = createBody.extend(wrappedMaterial).strict();
const importVersionBody = z.object(wrappedMaterial).strict();
const importParamsQuery = z.object({ algorithm: z.enum(IMPORT_ALGORITHMS).default('RSA_AES_KEY_WRAP_SHA_256') }).strict();
const exportBody = z
  .object({
    public_key: z.string().min(1).max(16_384).optional(),
    algorithm: z.enum(ESCROW_ALGORITHMS).optional(),
    version: versionNumber.optional(),
    request_id: z.string().uuid('request_id is the id of an export request').optional(),
  })
  .strict();
const exportRequestBody = z
  .object({
    public_key: z.string().min(1).max(16_384),
    algorithm: z.enum(ESCROW_ALGORITHMS).optional(),
    version: versionNumber.optional(),
    ttl_seconds: z.number().int().optional(),
  })
  .strict();
const emptyBody = z.object({}).strict();
const encryptBody = z.object({ plaintext: b64, associated_data: b64.optional(), key_version: versionNumber.optional() }).strict();
const decryptBody = z.object({ ciphertext: value, associated_data: b64.optional() }).strict();
const rewrapBody = z.object({ ciphertext: value, associated_data: b64.optional(), key_version: versionNumber.optional() }).strict();
const bits = z.union(KMS_DATAKEY_BITS.map((b) => z.literal(b)) as [z.ZodLiteral<128>, z.ZodLiteral<256>, z.ZodLiteral<512>]);
// `mode` is the path's; a client that also sends it in the body (KmsDataKeyRequest) must agree with it.
const datakeyBody = z.object({ mode: z.enum(['plaintext', 'wrapped']).optional(), bits: bits.optional(), associated_data: b64.optional() }).strict();
const signFields = {
  input: b64,
  prehashed: z.boolean().optional(),
  hash_algorithm: z.enum(['sha2-256', 'sha2-384', 'sha2-512']).optional(),
  signature_algorithm: z.enum(['pss', 'pkcs1v15']).optional(),
  marshaling_algorithm: z.enum(['asn1', 'jws']).optional(),
};
const signBody = z.object({ ...signFields, key_version: versionNumber.optional() }).strict();
const verifyBody = z
  .object({ ...signFields, signature: value.optional(), hmac: value.optional() })
  .strict()
  .refine((b) => (b.signature === undefined) !== (b.hmac === undefined), 'give either "signature" or "hmac"');
const hmacBody = z.object({ input: b64, key_version: versionNumber.optional() }).strict();
// Items are checked one by one by the service: a bad item fails alone (per-item error), not the batch.
const batchBody = z.object({ items: z.array(z.unknown()).min(1).max(KMS_MAX_BATCH_ITEMS) }).strict();
const randomQuery = z
  .object({
    bytes: z
      .string()
      .regex(/^[1-9][0-9]{0,4}$/, `bytes is a whole number from 1 to ${KMS_MAX_RANDOM_BYTES}`)
      .transform(Number)
      .optional(),
    format: z.enum(['base64', 'hex']).optional(),
  })
  .strict();

// --- helpers -----------------------------------------------------------------

/** Import and export of named keys, with the escrow records that approve exports. */
const transfer = (s: Services) => new KeyTransfer(s.kms.keys, s.byok, { escrow: s.escrow, namespaces: s.namespaces });

/** The namespace and key a `/:ns/…/:name` route serves: checked (400) before it is authorised. */
interface KeyTarget {
  namespace: string;
  /** The key name. */
  path: string;
}
function routedKey(req: Request, res: Response): KeyTarget {
  const ns = checkNamespaceName(typeof req.params.ns === 'string' ? req.params.ns : '');
  const name = typeof req.params.name === 'string' ? req.params.name : '';
  const problem = kmsKeyNameProblem(name);
  if (problem) {
    // Named as the URL matcher stored it (bounded, storable text).
    auditTarget(res, ns);
    throw badRequest(problem);
  }
  return { namespace: ns, path: name };
}

/** The key version a `coffer:v<n>:…` value names, for the audit entry of a request that fails before the service says. */
function versionOf(v: unknown): number | undefined {
  const m = typeof v === 'string' ? /^coffer:v([1-9][0-9]{0,8}):/.exec(v) : null;
  return m ? Number(m[1]) : undefined;
}

type Handler<B> = (key: { ns: string; name: string }, body: B, res: Response, ctx: RouteContext<unknown, B, KeyTarget>) => Promise<unknown>;
const keyOf = ({ namespace, path }: KeyTarget) => ({ ns: namespace, name: path });

/** The key version the body as sent asks for, for the audit entry (also of a request whose body then fails its schema). */
function requestedVersion(req: Request, res: Response): void {
  const raw = req.body as Record<string, unknown> | undefined;
  const asked = raw?.key_version;
  const requested = versionOf(raw?.ciphertext ?? raw?.signature ?? raw?.hmac) ?? (Number.isInteger(asked) && (asked as number) >= 1 && (asked as number) <= INT4_MAX ? (asked as number) : undefined);
  if (requested !== undefined) auditVersion(res, requested);
}

/**
 * A key operation (POST …/{op}/{name}): authorised on the key, body parsed,
 * the result's key version named in the audit entry. Changes nothing stored.
 */
function keyOp<B>(action: string, capability: Capability, body: z.ZodType<B>, handler: Handler<B>): Operation {
  return op<unknown, B, KeyTarget>({
    action,
    access: on(capability),
    query: emptyQuery,
    body,
    bodyMayBeAbsent: true,
    changesState: false,
    target: routedKey,
    beforeBody: requestedVersion,
    handler: async (_req, res, ctx) => {
      const result = await handler(keyOf(ctx.target), ctx.body(), res, ctx);
      const version = (result as { key_version?: unknown } | null)?.key_version;
      if (typeof version === 'number') auditVersion(res, version);
      res.json(result);
    },
  });
}

/** Key administration: key-admin on the key; these change state (an audit intent first). */
function adminOp<B>(action: string, body: z.ZodType<B>, handler: Handler<B>, status = 200): Operation {
  return op<unknown, B, KeyTarget>({
    action,
    access: on('key-admin'),
    query: emptyQuery,
    body,
    bodyMayBeAbsent: true,
    target: routedKey,
    handler: async (_req, res, ctx) => {
      const result = await handler(keyOf(ctx.target), ctx.body(), res, ctx);
      const version = (result as { latest_version?: unknown } | null)?.latest_version;
      if (typeof version === 'number') auditVersion(res, version);
      res.status(status).json(result);
    },
  });
}

/**
 * POST /v1/kms/{ns}/batch/{operation}/{name}: 200 when every item succeeded,
 * 207 (Multi-Status) when any failed — each result then says which, and the
 * successful ones are as valid as ever. Not 400: that would tell generic
 * clients to drop a body that holds good ciphertexts (Vault's default, which it
 * later made configurable for that reason). A problem with the request as a
 * whole (no such key, not allowed, too many items, bad JSON) is its usual 4xx.
 */
function batchOp(operation: KmsBatchOperation): RoutePath {
  return single(
    `/v1/kms/:ns/batch/${operation}/:name`,
    'POST',
    keyOp(`kms.batch.${operation}`, operation, batchBody, async ({ ns, name }, body, res, { core }) => {
      const result = await core.services().kms.ops.batch(ns, name, operation, body.items as KmsBatchItem[]);
      if (result.failed > 0) {
        res.status(207);
        // The entry says some items failed (its outcome stays a success: the others were served).
        res.locals.errorCode = result.results.find((r) => r.error)?.error?.code ?? 'invalid_request';
      }
      return result;
    }),
  );
}

const KEY: RoutePath = {
  template: '/v1/kms/:ns/keys/:name',
  otherwise: (method) => (method === 'DELETE' ? 'kms.key.delete' : method === 'GET' ? 'kms.key.read' : 'kms.key.create'),
  ops: {
    POST: adminOp('kms.key.create', createBody, ({ ns, name }, body, _res, { core }) => core.services().kms.keys.create(ns, name, body), 201),
    GET: op({
      action: 'kms.key.read',
      access: ANY_KMS,
      query: emptyQuery,
      target: routedKey,
      handler: async (_req, res, { core, target: { namespace: ns, path: name } }) => {
        res.json(await core.services().kms.keys.read(ns, name));
      },
    }),
    DELETE: adminOp('kms.key.delete', emptyBody, ({ ns, name }, _body, _res, { core }) => core.services().kms.keys.delete(ns, name)),
  },
};

export const kmsMount: Mount = {
  prefix: '/v1/kms',
  guard: 'token',
  names: { as: 'path', max: 128 },
  unknown: { action: 'kms.unknown' },
  paths: [
    single('/v1/kms/random', 'GET', op({
      action: 'kms.random',
      access: { kind: 'token' },
      query: randomQuery,
      handler: (_req, res, { core, query }) => {
        const q = query();
        res.json(core.services().kms.ops.random({ ...(q.bytes !== undefined ? { bytes: q.bytes } : {}), ...(q.format ? { format: q.format } : {}) }));
      },
    })),
    single('/v1/kms/:ns/keys', 'GET', op({
      action: 'kms.key.list',
      access: ANY_KMS,
      query: ({ maxPageSize }) => pageQuery(maxPageSize).omit({ recursive: true }),
      // Listing needs a KMS capability on the namespace as a whole (a rule whose key glob is `*`);
      // the page then holds only the keys the caller may see.
      target: (req) => ({ namespace: checkNamespaceName(typeof req.params.ns === 'string' ? req.params.ns : '') }),
      handler: async (_req, res, { core, maxPageSize, query, target: { namespace: ns } }) => {
        const q = query();
        const principal = principalOf(res);
        res.json(await core.services().kms.keys.list(ns, { limit: q.limit ?? maxPageSize, after: decodeCursor(q.cursor) }, (name) => maySeeKey(principal, ns, name)));
      },
    })),
    KEY,
    single('/v1/kms/:ns/keys/:name/config', 'POST', adminOp('kms.key.config', configBody, ({ ns, name }, body, _res, { core }) => core.services().kms.keys.updateConfig(ns, name, body))),
    single('/v1/kms/:ns/keys/:name/rotate', 'POST', adminOp('kms.key.rotate', emptyBody, ({ ns, name }, _body, _res, { core }) => core.services().kms.keys.rotate(ns, name))),
    // BYOK for named keys (kms/named-keys/transfer.ts): parameters of the namespace's one-time wrapping key, then the import.
    single('/v1/kms/:ns/keys/:name/import-params', 'GET', op({
      action: 'kms.key.import_params',
      access: on('key-admin'),
      query: importParamsQuery,
      // Creates a one-time wrapping key.
      changesState: true,
      target: routedKey,
      handler: async (_req, res, { core, query, target: { namespace: ns } }) => {
        const q = query();
        res.json(await core.services().byok.importParams({ kind: 'namespace', namespace: ns }, q.algorithm, principalOf(res).identity));
      },
    })),
    single('/v1/kms/:ns/keys/:name/import', 'POST', adminOp('kms.key.import', importBody, ({ ns, name }, body, _res, { core }) =>
      transfer(core.services()).importKey(ns, name, body), 201)),
    single('/v1/kms/:ns/keys/:name/import-version', 'POST', adminOp('kms.key.import_version', importVersionBody, ({ ns, name }, body, _res, { core }) =>
      transfer(core.services()).importVersion(ns, name, body))),
    single('/v1/kms/:ns/keys/:name/export', 'POST', op({
      action: 'kms.key.export',
      access: on('key-admin'),
      query: emptyQuery,
      body: exportBody,
      changesState: false,
      target: routedKey,
      handler: async (_req, res, { core, body, target: { namespace: ns, path: name } }) => {
        const b = body();
        if (b.version !== undefined) auditVersion(res, b.version);
        const result = await transfer(core.services()).exportKey(ns, name, b, principalOf(res).identity);
        auditVersion(res, result.key_version);
        res.json(result);
      },
    })),
    single('/v1/kms/:ns/keys/:name/export-requests', 'POST', op({
      action: 'kms.key.export_request',
      access: on('key-admin'),
      query: emptyQuery,
      body: exportRequestBody,
      target: routedKey,
      handler: async (_req, res, { core, body, target: { namespace: ns, path: name } }) => {
        const b = body();
        const created = await transfer(core.services()).requestExport(ns, name, principalOf(res).identity, b);
        if (created.kms_key) auditVersion(res, created.kms_key.version);
        res.status(201).json(created);
      },
    })),
    single('/v1/kms/:ns/keys/:name/trim', 'POST', adminOp('kms.key.trim', trimBody, ({ ns, name }, body, _res, { core }) => core.services().kms.keys.trim(ns, name, body.min_available_version))),
    single('/v1/kms/:ns/public-key/:name', 'GET', op({
      action: 'kms.public_key',
      // Whoever may verify may read the public key (it is also in the key's read for anyone who sees the key).
      access: on('verify'),
      query: readQuery,
      target: routedKey,
      handler: async (_req, res, { core, query, target: { namespace: ns, path: name } }) => {
        const q = query();
        const info = await core.services().kms.keys.read(ns, name);
        const version = q.version ?? info.latest_version;
        auditVersion(res, version);
        const found = info.versions.find((v) => v.version === version);
        if (!found) throw badRequest(`key "${name}" has no version ${version}`);
        if (!found.public_key) throw badRequest(`key "${name}" is a ${info.type} key, which has no public key`);
        res.json({ name, type: info.type, key_version: version, ...found.public_key });
      },
    })),
    single('/v1/kms/:ns/encrypt/:name', 'POST', keyOp('kms.encrypt', 'encrypt', encryptBody, ({ ns, name }, body, _res, { core }) => core.services().kms.ops.encrypt(ns, name, body))),
    single('/v1/kms/:ns/decrypt/:name', 'POST', keyOp('kms.decrypt', 'decrypt', decryptBody, ({ ns, name }, body, _res, { core }) => core.services().kms.ops.decrypt(ns, name, body))),
    single('/v1/kms/:ns/rewrap/:name', 'POST', keyOp('kms.rewrap', 'rewrap', rewrapBody, ({ ns, name }, body, _res, { core }) => core.services().kms.ops.rewrap(ns, name, body))),
    ...(['plaintext', 'wrapped'] as const).map((mode) =>
      single(`/v1/kms/:ns/datakey/${mode}/:name`, 'POST', keyOp(`kms.datakey.${mode}`, 'datakey', datakeyBody, ({ ns, name }, body, _res, { core }) => {
        if (body.mode !== undefined && body.mode !== mode) throw badRequest(`this path issues "${mode}" data keys; the body says "${body.mode}"`);
        return core.services().kms.ops.datakey(ns, name, { ...body, mode });
      })),
    ),
    single('/v1/kms/:ns/sign/:name', 'POST', keyOp('kms.sign', 'sign', signBody, ({ ns, name }, body, _res, { core }) => core.services().kms.ops.sign(ns, name, body))),
    single('/v1/kms/:ns/verify/:name', 'POST', keyOp('kms.verify', 'verify', verifyBody, ({ ns, name }, body, _res, { core }) => {
      const { hmac, signature, ...rest } = body;
      const ops = core.services().kms.ops;
      return hmac !== undefined ? ops.hmacVerify(ns, name, { input: rest.input, hmac }) : ops.verify(ns, name, { ...rest, signature: signature! });
    })),
    single('/v1/kms/:ns/hmac/:name', 'POST', keyOp('kms.hmac', 'hmac', hmacBody, ({ ns, name }, body, _res, { core }) => core.services().kms.ops.hmac(ns, name, body))),
    batchOp('encrypt'),
    batchOp('decrypt'),
    batchOp('rewrap'),
  ],
};
