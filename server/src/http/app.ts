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
import { authRouter } from './routes/auth.js';
import { namespacesRouter } from './routes/namespaces.js';
import { bulkRouter, secretsRouter } from './routes/secrets.js';
import { sysRouter } from './routes/sys.js';
import { byokRouter, escrowRouter } from './routes/keys.js';
import { clientCertificate } from './client-cert.js';
import { requestObserver } from './observe.js';
import type { CofferMetrics } from '../ops/metrics.js';
import { auditRouter } from './routes/audit.js';
import { capabilitiesRouter, policiesRouter } from './routes/policies.js';
import { auditIntents, auditRequests } from './audit.js';
import { refuseDeclaredOversize, refuseUnsafeBody, requireOriginForm } from './edge.js';

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
  app.use(refuseDeclaredOversize(options.maxRequestBytes));
  // Any content type is read as JSON (curl -d sends form encoding by default), as Vault does.
  app.use(express.json({ limit: options.maxRequestBytes, strict: true, type: () => true }));
  app.use(refuseUnsafeBody);

  const requireUnsealed: RequestHandler = (_req, _res, next) => next(core.isSealed ? sealedError() : undefined);
  const requireToken = tokenAuth(core);
  const guarded = [requireUnsealed, requireToken];
  // Before any handler: a request that may change state records its audit intent (or gets 503).
  app.use(auditIntents(core, requireToken));

  app.use('/v1/sys/audit', guarded, auditRouter(core));
  app.use('/v1/sys/policies', guarded, policiesRouter(core));
  app.use('/v1/sys/capabilities-self', guarded, capabilitiesRouter());
  app.use('/v1/sys', sysRouter(core, guarded, { metrics: options.metrics }));
  app.use('/v1/auth', authRouter(core, requireUnsealed, guarded));
  app.use('/v1/namespaces', guarded, namespacesRouter(core, options.maxPageSize));
  app.use('/v1/secrets', guarded, secretsRouter(core, options.maxPageSize));
  app.use('/v1/bulk', guarded, bulkRouter(core, options.maxPageSize));
  app.use('/v1/byok', guarded, byokRouter(core));
  app.use('/v1/escrow', guarded, escrowRouter(core));

  app.use(notFoundHandler);
  app.use(errorHandler(logger, options.maxRequestBytes, options.classifyError));
  return app;
}
