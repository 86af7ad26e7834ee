/**
 * /v1/namespaces/{ns}/export and /v1/namespaces/{ns}/import: a namespace moved
 * between Coffer servers (kms/namespace-transfer). The target hands out its
 * import key with GET /v1/byok/namespaces/{ns}/import-params
 * (?algorithm=RSA_AES_KEY_WRAP_SHA_256); the source seals the namespace for it.
 *
 * Server-wide admin on both sides: an export carries every secret value of
 * the namespace (readable by whoever holds the target's import key), which no
 * namespace-scoped right covers. Audited with counts (res.locals.auditCounts),
 * never values; the export's body leaves only once its entry is durable, like
 * any other response.
 *
 * The import's upload is the bundle as sent, `application/x-ndjson`, read here
 * up to MAX_BUNDLE_BYTES instead of by the JSON body parser.
 */
import type { Request } from 'express';
import { z } from 'zod';
import { NAMESPACE_EXPORT_MEDIA_TYPE } from '@coffer/sdk/api';
import { CofferError } from '../../errors.js';
import { namespaceParam, op, single, type RoutePath } from '../route.js';
import { emptyQuery } from '../schemas.js';

/** The largest bundle an import accepts (held in memory while it is opened). */
export const MAX_BUNDLE_BYTES = 256 * 1024 * 1024;

const IMPORT_PATH = /^\/v1\/namespaces\/[^/]+\/import$/;

/** An upload of a namespace bundle: left alone by the JSON body parser and its size limit. */
export const isNamespaceImportUpload = (req: Request): boolean =>
  IMPORT_PATH.test(req.baseUrl + req.path) && req.is(NAMESPACE_EXPORT_MEDIA_TYPE) === NAMESPACE_EXPORT_MEDIA_TYPE;

async function bundleText(req: Request): Promise<string> {
  if (!isNamespaceImportUpload(req)) throw new CofferError('unsupported_media_type', `send the bundle file as ${NAMESPACE_EXPORT_MEDIA_TYPE}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BUNDLE_BYTES) throw new CofferError('payload_too_large', `a bundle larger than ${MAX_BUNDLE_BYTES} bytes is not accepted`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const exportBody = z.object({ public_key: z.string().min(1).max(16_384) }).strict();
const ADMIN = { kind: 'admin', denied: 'moving a namespace between servers needs admin rights' } as const;

export const namespaceTransferPaths: RoutePath[] = [
  single('/v1/namespaces/:name/export', 'POST', op({
    action: 'namespace.export',
    access: ADMIN,
    query: emptyQuery,
    body: exportBody,
    // Reads only.
    changesState: false,
    target: namespaceParam,
    handler: async (_req, res, { core, body: parse, target: { namespace: name } }) => {
      const body = parse();
      const { lines, counts } = await core.services().namespaceTransfer.export(name, body.public_key);
      res.locals.auditCounts = counts;
      res.status(200);
      res.setHeader('Content-Type', `${NAMESPACE_EXPORT_MEDIA_TYPE}; charset=utf-8`);
      res.setHeader('Content-Disposition', `attachment; filename="coffer-namespace-${name}.ndjson"`);
      res.setHeader('Cache-Control', 'no-store');
      res.end(lines.join(''));
    },
  })),
  single('/v1/namespaces/:name/import', 'POST', op({
    action: 'namespace.import',
    access: ADMIN,
    query: emptyQuery,
    // No body schema: the upload is read below, after the name and the (empty) query are checked.
    target: namespaceParam,
    handler: async (req, res, { core, target: { namespace: name } }) => {
      const text = await bundleText(req);
      const { result, counts } = await core.services().namespaceTransfer.import(name, text);
      res.locals.auditCounts = counts;
      res.status(200).json(result);
    },
  })),
];
