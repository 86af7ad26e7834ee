/**
 * What every request must satisfy before it is routed. Each rule closes a gap
 * between what express would serve and what the audit log, the policy check or
 * the database would see:
 *
 *  - The request target is origin-form (`/path?query`) in printable ASCII.
 *    express also serves the absolute form (`GET http://host/v1/…`), drops a
 *    `#fragment`, and Node's URL parser trims and rewrites some characters; the
 *    audit entry must name exactly what was routed, so such targets are refused.
 *  - No U+0000 and no unpaired UTF-16 surrogate anywhere (path, query, JSON body):
 *    PostgreSQL text cannot hold the first, jsonb refuses both, and a lone
 *    surrogate silently becomes U+FFFD in text columns. Refused here once,
 *    rather than answered with a database error (500) in whichever handler
 *    happens to store the string.
 *  - A declared body larger than the limit is refused (413) before a byte of it
 *    is read: the body parser would otherwise read (and discard) the whole
 *    declared length before answering, holding the connection until the request
 *    timeout.
 */
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { CofferError, badRequest } from '../errors.js';
import { isUnstorableText } from '../audit/storable.js';

/** `/` then printable ASCII, without `#` (a fragment is never sent to a server) or `\` (some URL parsers read it as `/`). */
const ORIGIN_FORM = /^\/[\x21-\x22\x24-\x5b\x5d-\x7e]*$/;

export const unsafeTextError = () =>
  badRequest('requests may not contain U+0000 or unpaired UTF-16 surrogates (in the path, the query or the JSON body)');

/** True if `s` holds U+0000 or a lone surrogate (the audit log's rule for what PostgreSQL text cannot hold). */
export const isUnsafeText = isUnstorableText;

/** Refuses non-origin-form targets and `%00` before anything else looks at the URL. */
export const requireOriginForm: RequestHandler = (req, _res, next) => {
  const target = req.url;
  if (!ORIGIN_FORM.test(target)) {
    return next(badRequest('the request target must be a path starting with "/", in printable ASCII (percent-encode the rest), without "#"'));
  }
  // The only way to U+0000 in a URL: the path parameters and the query are percent-decoded.
  if (target.includes('%00')) return next(unsafeTextError());
  next();
};

/** How long the rest of a refused body is read and discarded before the connection is cut. */
const LINGER_MS = 2000;

/**
 * Sockets whose current request was answered before its body arrived: if the request
 * timeout then fires, the connection is closed without a second (408) answer.
 */
export const answeredEarly = new WeakSet<object>();

/**
 * 413 for a declared Content-Length over the limit, at once, without reading the body.
 * The connection is not closed the moment the answer is sent: a client still sending
 * would then get a reset, which can discard the 413 before it reads it. Node discards
 * the rest of the body as it arrives; a body not complete within LINGER_MS has its
 * connection closed, and a small one leaves the connection usable.
 */
export function refuseDeclaredOversize(limit: number): RequestHandler {
  return (req, res, next) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      const socket = req.socket;
      answeredEarly.add(socket);
      res.once('finish', () => {
        // Already all here: the connection may be serving its next request by the time a timer fires.
        if (req.complete) return void answeredEarly.delete(socket);
        const cut = setTimeout(() => socket.destroy(), LINGER_MS);
        cut.unref();
        const done = () => {
          clearTimeout(cut);
          answeredEarly.delete(socket);
        };
        req.once('end', done);
        socket.once('close', done);
      });
      return next(new CofferError('payload_too_large', `request body is larger than ${limit} bytes`));
    }
    next();
  };
}

/**
 * Refuses a JSON body holding U+0000 or a lone surrogate in any key or string.
 * Iterative: a deeply nested body must not exhaust the stack. The refused body
 * is dropped so that nothing after this (the audit entry included) sees it.
 */
export const refuseUnsafeBody: RequestHandler = (req, _res, next) => {
  const pending: unknown[] = [req.body];
  while (pending.length > 0) {
    const value = pending.pop();
    if (typeof value === 'string') {
      if (isUnsafeText(value)) {
        req.body = undefined;
        return next(unsafeTextError());
      }
    } else if (Array.isArray(value)) {
      for (const item of value) pending.push(item);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) pending.push(key, item);
    }
  }
  next();
};

/** Whether the request carries a body (type-is's rule, the one body-parser applies). */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || !Number.isNaN(Number(req.headers['content-length']));
}
