/**
 * Fail-closed auditing of every request. The entry is written when the
 * response is complete but before a byte of it leaves: `res.end` is held until
 * the audit log has made the entry durable. If it cannot, the client gets 503
 * instead of the response (no secret leaves unaudited). While a sink is stuck,
 * requests are refused before they do anything.
 *
 * A request that may change state first records an intent (audit/intents.ts)
 * before its handler runs, so that a change is never committed without an
 * entry even when the entry's own append fails afterwards or the process dies;
 * a route declaring `intentInTransaction` records it inside its change instead.
 *
 * Load-balancer probes (health, readiness, metrics) are not audited: they
 * would be most of the log and say nothing about who touched what.
 */
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { CofferCore } from '../core.js';
import { httpStatus } from './status.js';
import { auditUnavailable } from '../audit/audit-log.js';
import { draftFor } from '../audit/entry.js';
import type { Principal } from '../policy/policy.js';
import type { AuditTarget, Operation } from './route.js';
import { matchOf } from './route-template.js';

const UNAUDITED = new Set(['/v1/sys/health', '/v1/sys/ready', '/v1/sys/metrics']);

type End = Response['end'];

/** The entry this request gets with `status` (also for handlers that audit inside their own transaction). */
export function auditDraft(core: CofferCore, req: Request, res: Response, status: number, principal?: Principal) {
  const draft = draftFor(
    req,
    matchOf(req),
    status,
    res.locals.requestId as string,
    principal ?? (res.locals.principal as Principal | undefined),
    (res.locals.errorCode as string | undefined) ?? null,
    (v) => core.audit.hmac(v),
    (accessor) => core.audit.accessorHmac(accessor),
  );
  // What the handler routed and authorised wins over what the URL seems to say.
  const target = res.locals.auditTarget as AuditTarget | undefined;
  if (target) {
    draft.namespace = target.namespace;
    if (target.path !== undefined) draft.path = target.path;
  }
  const version = res.locals.auditVersion as number | undefined;
  if (version !== undefined) draft.version = version;
  const counts = res.locals.auditCounts as Record<string, number> | undefined;
  if (counts) draft.counts = { ...counts };
  return draft;
}

/** res.locals key: this response is held for its entry (ARMED) or was (HELD). */
const AUDIT_HOLD = 'auditHold';
const ARMED = 1;
const HELD = 2;

/** Prototypes (express's per-app response) whose `end` holds armed responses; see installHold. */
const holding = new WeakSet<object>();

/**
 * Makes `end` on `proto` hold a response armed by auditRequests until its entry is durable,
 * and pass any other call straight through. Once per prototype, not a closure per response:
 * an own `end` on every response was a visible share of an audited read's CPU.
 */
function installHold(proto: Response, core: CofferCore): void {
  const end = proto.end as (...args: unknown[]) => Response;
  const audit = core.audit;
  proto.end = function auditedEnd(this: Response, ...args: unknown[]) {
    const locals = this.locals as Record<string, unknown> | undefined;
    if (locals?.[AUDIT_HOLD] !== ARMED || locals.audited === true) return end.apply(this, args);
    locals[AUDIT_HOLD] = HELD;
    const res = this;
    audit.append(auditDraft(core, res.req, res, res.statusCode), { intent: locals.auditIntent === true }).then(
      () => end.apply(res, args),
      () => {
        if (res.headersSent) return end.call(res);
        const { code, message, retryAfterSeconds } = auditUnavailable();
        const body = JSON.stringify({ error: { code, message, requestId: locals.requestId } });
        res.statusCode = httpStatus(auditUnavailable());
        res.removeHeader('ETag');
        res.setHeader('Retry-After', String(retryAfterSeconds));
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.setHeader('Content-Length', Buffer.byteLength(body));
        return end.call(res, body);
      },
    );
    return this;
  } as End;
  holding.add(proto);
}

export function auditRequests(core: CofferCore): RequestHandler {
  const audit = core.audit;
  return (req, res, next) => {
    if (!audit.enabled || UNAUDITED.has(req.path)) return next();
    if (!audit.healthy) return next(auditUnavailable());
    // Express gives each app's responses one prototype of their own (app.response).
    const proto = Object.getPrototypeOf(res) as Response;
    if (!holding.has(proto)) {
      // Only ever express's per-app prototype: a shared one would hold other apps' responses with this core.
      if (proto === express.response || !Object.prototype.hasOwnProperty.call(proto, 'app')) throw new Error('audit: not an express app response');
      installHold(proto, core);
    }
    res.locals[AUDIT_HOLD] = ARMED;
    next();
  };
}

/**
 * Any method but GET/HEAD/OPTIONS may change state unless its route declares otherwise, and so may
 * the few reads whose route declares that they do.
 */
function mayChangeState(req: Request, op: Operation | undefined): boolean {
  const declared = op?.changesState;
  if (declared !== undefined) return declared;
  return req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS';
}

/** A request that may change state records its intent first, unless its route records it inside its change's transaction. */
function needsIntentFirst(req: Request): boolean {
  const op = matchOf(req).op;
  return op?.intentInTransaction !== true && mayChangeState(req, op);
}

/**
 * Records the intent of every request that may change state before any
 * handler runs (after the body is parsed: a login's intent names the user).
 * The identity is the token's, verified the same way as the route will (a
 * cache hit for a token seen before); a missing or bad token records none, and
 * the route's own check still answers 401. Runs for every such request, also
 * unauthenticated ones: deny by default, no route can forget it.
 */
export function auditIntents(core: CofferCore, requireToken: RequestHandler): RequestHandler {
  const audit = core.audit;
  return (req, res, next) => {
    if (!audit.enabled || UNAUDITED.has(req.path) || !needsIntentFirst(req)) return next();
    void verifiedPrincipal(requireToken, req)
      .then((principal) => audit.intend(auditDraft(core, req, res, 0, principal)))
      .then(
        () => {
          res.locals.auditIntent = true;
          next();
        },
        (err: unknown) => next(err),
      );
  };
}

/**
 * The request reached `op` (which needs its intent before it runs) without
 * one: the intent middleware judged by the URL's route, and that route declared
 * `intentInTransaction` where the one serving it does not. Never on a URL both
 * read alike; the check keeps a misreading from skipping an intent.
 */
export function intentMissing(core: CofferCore, req: Request, res: Response, op: Operation): boolean {
  if (!core.audit.enabled || res.locals.auditIntent === true || op.intentInTransaction === true || UNAUDITED.has(req.path)) return false;
  return mayChangeState(req, op);
}

/** The request's token's principal, or undefined; never an error, never res.locals.principal. */
function verifiedPrincipal(requireToken: RequestHandler, req: Request): Promise<Principal | undefined> {
  if (!req.headers.authorization && !req.headers['x-coffer-token']) return Promise.resolve(undefined);
  // A private `locals`: routes that take no token must not gain an identity from this check.
  const locals: Record<string, unknown> = {};
  return new Promise((resolve) => {
    try {
      void requireToken(req, { locals } as unknown as Response, (err?: unknown) => resolve(err ? undefined : (locals.principal as Principal | undefined)));
    } catch {
      // Sealed: no keys to verify with.
      resolve(undefined);
    }
  });
}
