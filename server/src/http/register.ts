/**
 * Express registration of the route table: one router per mount, one express
 * route per declared operation, each behind the checks its access declares.
 * Nothing here names a route; what is served is exactly the table.
 */
import { Router, type Express, type Request, type RequestHandler, type Response } from 'express';
import type { ZodType } from 'zod';
import type { ChangeIntent } from '../audit/intents.js';
import type { AuditDraft } from '../audit/entry.js';
import type { CofferCore } from '../core.js';
import { CofferError } from '../errors.js';
import type { CofferMetrics } from '../ops/metrics.js';
import { isAdmin, isAllowed } from '../policy/policy.js';
import { intentMissing } from './audit.js';
import { principalOf } from './auth.js';
import { methodNotAllowed } from './respond.js';
import { auditTarget, type Access, type Mount, type Operation, type RouteContext, type RouteLimits, type RoutePath, type Schema, type Target } from './route.js';
import { MOUNTS, ROUTES } from './route-table.js';

export interface RouteDeps {
  core: CofferCore;
  maxPageSize: number;
  metrics: CofferMetrics | undefined;
  requireUnsealed: RequestHandler;
  /** A valid token: sets res.locals.principal. */
  requireToken: RequestHandler;
  auditDraft(req: Request, res: Response, status: number): AuditDraft;
  /** A request's audit intent for the statement of its change to store (null: auditing is off). */
  intentInChange(draft: AuditDraft): ChangeIntent | null;
}

const resolve = <T>(schema: Schema<T> | undefined, limits: RouteLimits): ZodType<T> | undefined =>
  typeof schema === 'function' ? schema(limits) : schema;

/** The handler of an operation, with its schemas resolved once. */
function handlerOf(operation: Operation, deps: RouteDeps): (req: Request, res: Response) => unknown {
  const query = resolve(operation.query, deps);
  const body = resolve(operation.body, deps);
  const { access, bodyMayBeAbsent } = operation;
  const declared = operation as unknown as Operation<unknown, unknown, Target | undefined>;
  if (declared.target && declared.targetOf) throw new Error(`${operation.action}: declare target or targetOf, not both`);
  if (declared.beforeBody && !declared.target) throw new Error(`${operation.action}: beforeBody needs a target`);
  // Deny by default: a scoped route cannot forget its capability check.
  if (access.kind === 'scoped' && !declared.target && !declared.targetOf) throw new Error(`${operation.action}: a scoped route declares its target or targetOf`);
  return (req, res) => {
    const parsed: { query?: unknown; body?: unknown } = {};
    const ctx: RouteContext<unknown, unknown, Target | undefined> = {
      core: deps.core,
      maxPageSize: deps.maxPageSize,
      metrics: deps.metrics,
      target: undefined,
      query: () => ('query' in parsed ? parsed.query : (parsed.query = query ? query.parse(req.query) : req.query)),
      body: () => ('body' in parsed ? parsed.body : (parsed.body = body ? body.parse(bodyMayBeAbsent ? (req.body ?? {}) : req.body) : req.body)),
      authorize: (namespace, path = '') => authorize(access, res, namespace, path),
      auditDraft: (status) => deps.auditDraft(req, res, status),
      intentInChange: () => {
        if (!operation.intentInTransaction) throw new Error('intentInChange() on a route that records its intent before it runs');
        if (res.locals.auditIntent === true) return null; // recorded before the handler already (intentMissing)
        const intent = deps.intentInChange(deps.auditDraft(req, res, 0));
        // Once stored, the request's entry deletes it (and is recovered from it if its append fails).
        return intent && { ...intent, stored: () => void (res.locals.auditIntent = true) };
      },
    };
    const run = () => serve(declared, req, res, ctx);
    if (intentMissing(deps.core, req, res, operation)) {
      return deps.core.audit.intend(deps.auditDraft(req, res, 0)).then(() => {
        res.locals.auditIntent = true;
        return run();
      });
    }
    return run();
  };
}

/**
 * The fixed order of a route that declares its target. From the URL: target (400), audit name,
 * authorisation (403), query and body (400). From the query or body: those first, then the target
 * (which may look a record up), its audit name and authorisation.
 */
function serve(operation: Operation<unknown, unknown, Target | undefined>, req: Request, res: Response, ctx: RouteContext<unknown, unknown, Target | undefined>): unknown {
  const admit = (target: Target): RouteContext<unknown, unknown, Target | undefined> => {
    auditTarget(res, target.namespace, target.path);
    if (operation.access.kind === 'scoped') ctx.authorize(target.namespace, target.path ?? '');
    return { ...ctx, target };
  };
  if (operation.target) {
    const scoped = admit(operation.target(req, res)!);
    ctx.query();
    operation.beforeBody?.(req, res);
    ctx.body();
    return operation.handler(req, res, scoped);
  }
  if (operation.targetOf) {
    const inputs = { query: ctx.query(), body: ctx.body() };
    const found = operation.targetOf(inputs, req, ctx as RouteContext<unknown, unknown, undefined>);
    return found instanceof Promise
      ? found.then((target) => operation.handler(req, res, admit(target!)))
      : operation.handler(req, res, admit(found!));
  }
  return operation.handler(req, res, ctx);
}

function authorize(access: Access, res: Response, namespace: string, path: string): void {
  if (access.kind !== 'scoped') throw new Error(`authorize() on a route declared ${access.kind}: declare the capability it checks`);
  const principal = principalOf(res);
  const wanted = typeof access.capability === 'string' ? [access.capability] : access.capability;
  if (!wanted.some((c) => isAllowed(principal, c, namespace, path))) throw access.denied(wanted[0]!, namespace, path);
}

const adminCheck = (denied: string): RequestHandler => (_req, res, next) =>
  next(isAdmin(principalOf(res)) ? undefined : new CofferError('permission_denied', denied));

/** The checks before an operation's handler, less what its mount already ran. */
function checksOf(access: Access, mountGuard: Mount['guard'], deps: RouteDeps): RequestHandler[] {
  if (access.kind === 'public') return [];
  if (access.kind === 'login') return [deps.requireUnsealed];
  const token = mountGuard === null ? [deps.requireUnsealed, deps.requireToken] : [];
  if (access.kind !== 'admin') return token;
  const mountAdmin = mountGuard !== null && mountGuard !== 'token' ? mountGuard.denied : undefined;
  if (mountAdmin !== undefined && mountAdmin !== access.denied) throw new Error(`admin route under a mount with another admin check: ${access.denied}`);
  return mountAdmin === undefined ? [...token, adminCheck(access.denied)] : token;
}

function guardOf(guard: Mount['guard'], deps: RouteDeps): RequestHandler[] {
  if (guard === null) return [];
  const token = [deps.requireUnsealed, deps.requireToken];
  return guard === 'token' ? token : [...token, adminCheck(guard.denied)];
}

const lower = { GET: 'get', PUT: 'put', POST: 'post', DELETE: 'delete', PATCH: 'patch' } as const;

/** Serves the route table on `app`. */
export function registerRoutes(app: Express, deps: RouteDeps): void {
  const enabled = (o: Operation) => o.enabled?.({ metrics: deps.metrics }) ?? true;
  for (const mount of MOUNTS) {
    const router = Router({ caseSensitive: true });
    if (mount.own) {
      const handlers = new Map<Operation, (req: Request, res: Response) => unknown>();
      for (const path of mount.paths) for (const o of Object.values(path.ops)) handlers.set(o, handlerOf(o, deps));
      const serve = (req: Request, res: Response, path: RoutePath, method: string) => {
        const o = path.ops[method as keyof RoutePath['ops']];
        if (!o) throw methodNotAllowed(Object.keys(path.ops));
        return handlers.get(o)!(req, res);
      };
      router.use(...guardOf(mount.guard, deps), mount.own.dispatch(serve));
    } else {
      const routes = ROUTES.filter((r) => r.mount === mount && enabled(r.op));
      const open = (r: (typeof routes)[number]) => r.op.access.kind === 'public' || r.op.access.kind === 'login';
      const add = (r: (typeof routes)[number]) =>
        router[lower[r.method]](r.template.slice(mount.prefix.length) || '/', ...checksOf(r.op.access, mount.guard, deps), handlerOf(r.op, deps));
      // Routes without a token first: the mount's guard stands before everything else, unknown paths included.
      for (const r of routes.filter(open)) add(r);
      const guard = guardOf(mount.guard, deps);
      if (guard.length > 0) router.use(...guard);
      for (const r of routes.filter((r) => !open(r))) add(r);
    }
    app.use(mount.prefix, router);
  }
}
