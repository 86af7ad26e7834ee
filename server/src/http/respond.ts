/** Error mapping: every failure becomes `{"error": {code, message, requestId}}` with the right status. */
import { isConnectionError, isForeignKeyViolation } from '../storage/errors.js';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { ZodError } from 'zod';
import { CofferError } from '../errors.js';
import { routeTemplate } from './route-template.js';

interface BodyParserError {
  type?: string;
  status?: number;
  statusCode?: number;
}

function fromBodyParser(err: BodyParserError, limit: number): CofferError | null {
  switch (err.type) {
    case 'entity.too.large':
      return new CofferError(413, 'payload_too_large', `request body is larger than ${limit} bytes`);
    case 'entity.parse.failed':
      return new CofferError(400, 'invalid_json', 'request body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new CofferError(415, 'unsupported_media_type', 'request body must be UTF-8 JSON');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new CofferError(400, 'invalid_request', 'request body could not be read');
  }
  const status = err.status ?? err.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new CofferError(status, 'invalid_request', 'malformed request');
  }
  return null;
}

export function toCofferError(err: unknown, bodyLimit: number): CofferError | null {
  if (err instanceof CofferError) return err;
  if (err instanceof ZodError) {
    return new CofferError(
      400,
      'invalid_request',
      err.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; '),
    );
  }
  if (err instanceof URIError) return new CofferError(400, 'invalid_request', 'malformed URL encoding');
  // A key wrapped under a root version that a concurrent rotation retired (see migration 0005).
  if (isForeignKeyViolation(err) && /root_version_fkey/.test(String((err as { constraint?: unknown }).constraint ?? (err as Error).message))) {
    return new CofferError(503, 'unavailable', 'the root key was rotated while this request ran; retry');
  }
  // Body-parser errors first: an aborted upload carries the code ECONNABORTED but is the client's doing.
  const parsing = err && typeof err === 'object' ? fromBodyParser(err as BodyParserError, bodyLimit) : null;
  if (parsing) return parsing;
  // The database restarting or out of reach is temporary: tell the client when to come back.
  if (isConnectionError(err)) return databaseUnavailable();
  return null;
}

/** Seconds a client is asked to wait (Retry-After) while the database is away; a restart takes about this long. */
export const DATABASE_RETRY_AFTER_SECONDS = 1;

export const databaseUnavailable = () =>
  new CofferError(503, 'unavailable', 'the database is unavailable; retry shortly', undefined, DATABASE_RETRY_AFTER_SECONDS);

export function errorHandler(logger: Logger, bodyLimit: number): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const requestId = res.locals.requestId as string;
    let mapped = toCofferError(err, bodyLimit);
    if (!mapped) {
      // A bug. Log what we know (never request bodies: they may hold secrets) and say little.
      logger.error({ err, requestId, method: req.method, route: routeTemplate(req.originalUrl) }, 'unhandled error');
      mapped = new CofferError(500, 'internal', 'internal error; the server log has details under this request id');
    } else if (mapped.code === 'sealed') {
      // Expected while sealed (clients, probes and load balancers keep asking): not an error of the server's.
      logger.debug({ requestId, method: req.method, route: routeTemplate(req.originalUrl), code: mapped.code }, mapped.message);
    } else if (mapped.status >= 500) {
      logger.error({ requestId, method: req.method, route: routeTemplate(req.originalUrl), code: mapped.code }, mapped.message);
    }
    if (res.headersSent) return;
    res.locals.errorCode = mapped.code;
    if (mapped.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(mapped.retryAfterSeconds))));
    res.status(mapped.status).json({ error: { code: mapped.code, message: mapped.message, requestId } });
  };
}

export const notFoundHandler: RequestHandler = (_req, _res, next) => {
  next(new CofferError(404, 'not_found', 'no such endpoint'));
};

export const methodNotAllowed = (allowed: string[]) =>
  new CofferError(405, 'method_not_allowed', `method not allowed here; use ${allowed.join(', ')}`);
