/** Error mapping: every failure becomes `{"error": {code, message, requestId}}` with the right status. */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { ZodError } from 'zod';
import { CofferError } from '../errors.js';
import { routeTemplate } from './route-template.js';
import { EdgeError, httpStatus } from './status.js';

/**
 * Turns a failure from below the services (the database going away, a
 * concurrent root rotation's foreign key) into a CofferError, or null when it
 * is not one it knows. Given by the composition root, so http/ does not reach
 * into storage/.
 */
export type ErrorClassifier = (err: unknown) => CofferError | null;

interface BodyParserError {
  type?: string;
  status?: number;
  statusCode?: number;
}

function fromBodyParser(err: BodyParserError, limit: number): CofferError | null {
  switch (err.type) {
    case 'entity.too.large':
      return new CofferError('payload_too_large', `request body is larger than ${limit} bytes`);
    case 'entity.parse.failed':
      return new CofferError('invalid_json', 'request body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new CofferError('unsupported_media_type', 'request body must be UTF-8 JSON');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new CofferError('invalid_request', 'request body could not be read');
  }
  const status = err.status ?? err.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new EdgeError(status, 'invalid_request', 'malformed request');
  }
  return null;
}

export function toCofferError(err: unknown, bodyLimit: number, classify?: ErrorClassifier): CofferError | null {
  if (err instanceof CofferError) return err;
  if (err instanceof ZodError) {
    return new CofferError('invalid_request',
      err.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; '),
    );
  }
  if (err instanceof URIError) return new CofferError('invalid_request', 'malformed URL encoding');
  // Body-parser errors before storage's: an aborted upload carries the code ECONNABORTED but is the client's doing.
  const parsing = err && typeof err === 'object' ? fromBodyParser(err as BodyParserError, bodyLimit) : null;
  if (parsing) return parsing;
  return classify?.(err) ?? null;
}

export function errorHandler(logger: Logger, bodyLimit: number, classify?: ErrorClassifier): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const requestId = res.locals.requestId as string;
    let mapped = toCofferError(err, bodyLimit, classify);
    if (!mapped) {
      // A bug. Log what we know (never request bodies: they may hold secrets) and say little.
      logger.error({ err, requestId, method: req.method, route: routeTemplate(req.originalUrl) }, 'unhandled error');
      mapped = new CofferError('internal', 'internal error; the server log has details under this request id');
    } else if (mapped.code === 'sealed') {
      // Expected while sealed (clients, probes and load balancers keep asking): not an error of the server's.
      logger.debug({ requestId, method: req.method, route: routeTemplate(req.originalUrl), code: mapped.code }, mapped.message);
    } else if (httpStatus(mapped) >= 500) {
      logger.error({ requestId, method: req.method, route: routeTemplate(req.originalUrl), code: mapped.code }, mapped.message);
    }
    if (res.headersSent) return;
    res.locals.errorCode = mapped.code;
    if (mapped.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(mapped.retryAfterSeconds))));
    res.status(httpStatus(mapped)).json({ error: { code: mapped.code, message: mapped.message, requestId } });
  };
}

export const notFoundHandler: RequestHandler = (_req, _res, next) => {
  next(new CofferError('not_found', 'no such endpoint'));
};

export const methodNotAllowed = (allowed: string[]) =>
  new CofferError('method_not_allowed', `method not allowed here; use ${allowed.join(', ')}`);
