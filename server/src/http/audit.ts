/**
 * Fail-closed auditing of every request. The entry is written when the
 * response is complete but before a byte of it leaves: `res.end` is held until
 * the audit log has made the entry durable. If it cannot, the client gets 503
 * instead of the response (no secret leaves unaudited). While a sink is stuck,
 * requests are refused before they do anything.
 *
 * Load-balancer probes (health, readiness, metrics) are not audited: they
 * would be most of the log and say nothing about who touched what.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { CofferCore } from '../core.js';
import { auditUnavailable } from '../audit/audit-log.js';
import { draftFor } from '../audit/entry.js';
import type { Principal } from '../policy/policy.js';

const UNAUDITED = new Set(['/v1/sys/health', '/v1/sys/ready', '/v1/sys/metrics']);

type End = Response['end'];

/** The entry this request gets with `status` (also for handlers that audit inside their own transaction). */
export function auditDraft(core: CofferCore, req: Request, res: Response, status: number) {
  const draft = draftFor(
    req,
    status,
    res.locals.requestId as string,
    res.locals.principal as Principal | undefined,
    (res.locals.errorCode as string | undefined) ?? null,
    (v) => core.audit.hmac(v),
  );
  // Handlers that learn the namespace only from the database (escrow requests by id) name it here.
  if (draft.namespace === null && typeof res.locals.auditNamespace === 'string') draft.namespace = res.locals.auditNamespace;
  return draft;
}

export function auditRequests(core: CofferCore): RequestHandler {
  const audit = core.audit;
  return (req, res, next) => {
    if (!audit.enabled || UNAUDITED.has(req.path)) return next();
    if (!audit.healthy) return next(auditUnavailable());
    const end = res.end as (...args: unknown[]) => Response;
    let held = false;
    res.end = function auditedEnd(this: Response, ...args: unknown[]) {
      if (held || res.locals.audited === true) return end.apply(res, args);
      held = true;
      audit.append(auditDraft(core, req, res, res.statusCode)).then(
        () => end.apply(res, args),
        () => {
          if (res.headersSent) return end.call(res);
          const { code, message, retryAfterSeconds } = auditUnavailable();
          const body = JSON.stringify({ error: { code, message, requestId: res.locals.requestId } });
          res.statusCode = 503;
          res.removeHeader('ETag');
          res.setHeader('Retry-After', String(retryAfterSeconds));
          res.setHeader('Content-Type', 'application/json; charset=utf-8');
          res.setHeader('Content-Length', Buffer.byteLength(body));
          return end.call(res, body);
        },
      );
      return res;
    } as End;
    next();
  };
}
