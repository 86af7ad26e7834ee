/**
 * The express application. Middleware on the request path is kept to what
 * every request needs (request id, JSON body, sealed gate, token check):
 * express itself is most of the cost of a small request.
 */
import { randomUUID } from 'node:crypto';
import express, { type Express, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { CofferCore } from '../core.js';
import { sealedError } from '../errors.js';
import { tokenAuth } from './auth.js';
import { errorHandler, notFoundHandler, type ErrorClassifier } from './respond.js';
import { clientCertificate } from './client-cert.js';
import { requestObserver } from './observe.js';
import type { CofferMetrics } from '../ops/metrics.js';
import { auditDraft, auditIntents, auditRequests } from './audit.js';
import { registerRoutes } from './register.js';
import { isBackupUpload } from './routes/backup.js';
import { isNamespaceImportUpload } from './routes/namespace-transfer.js';
import { hasBody, refuseDeclaredOversize, refuseUnsafeBody, requireOriginForm } from './edge.js';

export interface AppOptions {
  maxRequestBytes: number;
  maxPageSize: number;
  /** Request metrics, and GET /v1/sys/metrics. */
  metrics?: CofferMetrics | undefined;
  /** Log every request at info (COFFER_REQUEST_LOG); otherwise only at debug. */
  requestLog?: boolean | undefined;
  /** The listener asks for client certificates (mTLS): expose verified ones as res.locals.clientCertificate. */
  clientCertificates?: boolean | undefined;
  /** Recognises failures from below the services (the database away); see http/respond.ts. */
  classifyError?: ErrorClassifier | undefined;
}

export function buildApp(core: CofferCore, logger: Logger, options: AppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  // Paths are names (Vault routes case-sensitively too): `/V1/SECRETS/…` is not `/v1/secrets/…`,
  // so the audit entry and the route cannot disagree about which endpoint was called.
  // Set before the first app.use: express creates its router with this setting then.
  app.set('case sensitive routing', true);

  const observe = requestObserver(logger, { metrics: options.metrics, requestLog: options.requestLog });
  app.use((req, res, next) => {
    const requestId = randomUUID();
    res.locals.requestId = requestId;
    res.setHeader('X-Request-Id', requestId);
    res.setHeader('Cache-Control', 'no-store');
    // Metrics and request log: method, route template and status only (paths may be sensitive, values always are).
    observe(req, res);
    next();
  });
  if (options.clientCertificates) app.use(clientCertificate);
  app.use(auditRequests(core));
  // Refused requests are audited like any other (as `unknown` when nothing was routed).
  app.use(requireOriginForm);
  // A backup file uploaded for verify or restore is read by its route, with its own limit (routes/backup.ts).
  const oversize = refuseDeclaredOversize(options.maxRequestBytes);
  // Any content type is read as JSON (curl -d sends form encoding by default), as Vault does.
  const json = express.json({ limit: options.maxRequestBytes, strict: true, type: () => true });
  // One layer, and none of the parser's work for a request without a body (most reads): what
  // body-parser would decide for it too (type-is's hasBody), leaving req.body undefined.
  app.use((req, res, next) => {
    if (isBackupUpload(req) || isNamespaceImportUpload(req) || !hasBody(req)) return next();
    oversize(req, res, (err?: unknown) => (err === undefined ? json(req, res, next) : next(err)));
  });
  app.use(refuseUnsafeBody);

  const requireUnsealed: RequestHandler = (_req, _res, next) => next(core.isSealed ? sealedError() : undefined);
  const requireToken = tokenAuth(core);
  // Before any handler: a request that may change state records its audit intent (or gets 503).
  app.use(auditIntents(core, requireToken));

  // The route table (route-table.ts), each route behind the checks it declares.
  registerRoutes(app, {
    core,
    maxPageSize: options.maxPageSize,
    metrics: options.metrics,
    requireUnsealed,
    requireToken,
    auditDraft: (req, res, status) => auditDraft(core, req, res, status),
    intentInChange: (draft) => core.audit.intentInChange(draft),
  });

  app.use(notFoundHandler);
  app.use(errorHandler(logger, options.maxRequestBytes, options.classifyError));
  return app;
}
