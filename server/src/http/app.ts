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
import { errorHandler, notFoundHandler } from './respond.js';
import { authRouter } from './routes/auth.js';
import { namespacesRouter } from './routes/namespaces.js';
import { bulkRouter, secretsRouter } from './routes/secrets.js';
import { sysRouter } from './routes/sys.js';

export interface AppOptions {
  maxRequestBytes: number;
  maxPageSize: number;
}

export function buildApp(core: CofferCore, logger: Logger, options: AppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');

  app.use((req, res, next) => {
    const requestId = randomUUID();
    res.locals.requestId = requestId;
    res.setHeader('X-Request-Id', requestId);
    res.setHeader('Cache-Control', 'no-store');
    if (logger.isLevelEnabled('debug')) {
      const start = process.hrtime.bigint();
      res.on('finish', () => {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        // Method, route prefix and status only: paths may be sensitive in some orgs, values always are.
        logger.debug({ requestId, method: req.method, route: req.baseUrl || req.path.split('/').slice(0, 3).join('/'), status: res.statusCode, ms }, 'request');
      });
    }
    next();
  });
  // Any content type is read as JSON (curl -d sends form encoding by default), as Vault does.
  app.use(express.json({ limit: options.maxRequestBytes, strict: true, type: () => true }));

  const requireUnsealed: RequestHandler = (_req, _res, next) => next(core.isSealed ? sealedError() : undefined);
  const requireToken = tokenAuth(core);
  const guarded = [requireUnsealed, requireToken];

  app.use('/v1/sys', sysRouter(core, [requireUnsealed, requireToken]));
  app.use('/v1/auth', guarded, authRouter(core));
  app.use('/v1/namespaces', guarded, namespacesRouter(core, options.maxPageSize));
  app.use('/v1/secrets', guarded, secretsRouter(core, options.maxPageSize));
  app.use('/v1/bulk', guarded, bulkRouter(core, options.maxPageSize));

  app.use(notFoundHandler);
  app.use(errorHandler(logger, options.maxRequestBytes));
  return app;
}
