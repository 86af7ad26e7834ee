/**
 * A route declared as data: the one place that says what a method on a path
 * template is called in the audit log, who may call it, what its query and
 * body look like, and what handles it. The route table (route-table.ts) is a
 * list of these; express registration (register.ts), the metrics and log label
 * and the audit action (route-template.ts) are all read from it, so a route
 * cannot be served under one name and audited or counted under another.
 *
 * Modelled on OpenBao's framework.Path (a pattern with operations) and
 * Infisical's route-as-data.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { ZodType } from 'zod';
import type { ChangeIntent } from '../audit/intents.js';
import type { AuditDraft } from '../audit/entry.js';
export type { Described } from '../audit/entry.js';
import type { CofferCore } from '../core.js';
import type { CofferError } from '../errors.js';
import type { CofferMetrics } from '../ops/metrics.js';
import type { Capability } from '../policy/policy.js';
import { checkNamespaceName } from '../secrets/names.js';

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH';
export const METHODS: readonly Method[] = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH'];

/**
 * Who may call a route. Everything but `scoped` is checked before the handler
 * runs; a `scoped` route names its namespace (and path) only once it has read
 * it (from the path, the body or the database): it declares where (`target` or
 * `targetOf`, required) and register.ts checks the declared capability there,
 * before the handler.
 */
export type Access =
  /** No token, also while sealed: init, unseal, status and probes. */
  | { kind: 'public' }
  /** No token, but unsealed: logins. */
  | { kind: 'login' }
  /** Any valid token; the handler shows only what the token may see. */
  | { kind: 'token' }
  /** Server-wide admin (root or an admin policy); `denied` is the 403's message. */
  | { kind: 'admin'; denied: string }
  /** A capability on the namespace (and path) the handler resolves. */
  | { kind: 'scoped'; capability: Capability | readonly Capability[]; denied: (capability: Capability, namespace: string, path: string) => CofferError };

/** The limits a schema may depend on (the server's configuration). */
export interface RouteLimits {
  maxPageSize: number;
}

export type Schema<T> = ZodType<T> | ((limits: RouteLimits) => ZodType<T>);

/** What a request acts on: named in its audit entry and, for a `scoped` route, authorised. */
export interface Target {
  namespace: string;
  /** The secret path or key name; unset for the namespace itself (authorised as path ''). */
  path?: string | undefined;
}

/** The parsed query and body a target may be read from. */
export interface Inputs<Q, B> {
  query: Q;
  body: B;
}

/** What a handler gets besides the request and response. */
export interface RouteContext<Q = unknown, B = unknown, T = undefined> {
  readonly core: CofferCore;
  readonly maxPageSize: number;
  readonly metrics: CofferMetrics | undefined;
  /** The declared target (`target` or `targetOf`), already named in the audit entry and authorised. */
  readonly target: T;
  /** The query parsed with the declared schema (400 on a mismatch); parsed once. */
  query(): Q;
  /** The body parsed with the declared schema (400 on a mismatch); parsed once. */
  body(): B;
  /** 403 unless the caller holds the declared (`scoped`) capability on `namespace`:`path` (register.ts calls it on the declared target). */
  authorize(namespace: string, path?: string): void;
  /** The audit entry this request gets with `status` (for handlers that audit inside their own transaction). */
  auditDraft(status: number): AuditDraft;
  /**
   * This request's audit intent for its change to store (operations declaring `intentInTransaction`);
   * null when auditing is off or the intent was recorded before the handler.
   */
  intentInChange(): ChangeIntent | null;
}

export interface Operation<Q = unknown, B = unknown, T = undefined> {
  /** The audit action, e.g. `secret.read`. */
  action: string;
  access: Access;
  query?: Schema<Q> | undefined;
  body?: Schema<B> | undefined;
  /**
   * The target named by the URL. With it, register.ts runs the fixed order before the handler:
   * the target is resolved (a malformed one is a 400; the resolver names what it could in the
   * audit entry), named in the audit entry, authorised (`scoped`: 403), then the query and the
   * body are parsed (400). So a caller without the capability learns nothing from a bad body.
   */
  target?: ((req: Request, res: Response) => T) | undefined;
  /**
   * The target named only by the query or body (or by a record they name): the query and body
   * are parsed first (400), then the target resolved (it may look a record up: 404), named in
   * the audit entry and authorised (403). Exclusive with `target`.
   */
  targetOf?: ((inputs: Inputs<Q, B>, req: Request, ctx: RouteContext<Q, B, undefined>) => T | Promise<T>) | undefined;
  /**
   * With `target`: runs after the query is parsed and before the body is, for what the audit
   * entry names from the body as sent (a KMS key version), also when the body then fails its schema.
   */
  beforeBody?: ((req: Request, res: Response) => void) | undefined;
  /** An absent body is read as `{}` (else it fails the schema). */
  bodyMayBeAbsent?: boolean | undefined;
  /**
   * Whether the request may change stored state, when its method says otherwise: `true` for a
   * read that does (a one-time key: an audit intent is recorded before it runs, like a write),
   * `false` for a POST that changes nothing (a KMS encryption: no intent; its entry is still
   * durable before the response leaves). Unset: every method but GET/HEAD/OPTIONS may.
   */
  changesState?: boolean | undefined;
  /**
   * The handler records the audit intent inside the transaction of its change
   * (RouteContext.intentInChange) instead of before it runs: for a handler whose
   * every change is that one transaction (a secret write). Not recording it
   * there would leave a change without its intent: declare it only then.
   */
  intentInTransaction?: boolean | undefined;
  /** Served only when this holds for the server's options (metrics). */
  enabled?: ((options: { metrics: CofferMetrics | undefined }) => boolean) | undefined;
  handler(req: Request, res: Response, ctx: RouteContext<Q, B, T>): unknown;
}

/** One path template and the operations served on it. */
export interface RoutePath {
  /** The full template (`/v1/namespaces/:name/kek`): the metrics and log label. */
  template: string;
  ops: Partial<Record<Method, Operation>>;
  /**
   * The audit action of a request with another method (answered 404 or 405),
   * as it has always been named; by default the action of the first operation.
   */
  otherwise?: string | ((method: string) => string) | undefined;
}

/** What a `:name` segment names in the audit entry, and how much of it is kept. */
export interface AuditName {
  as: 'namespace' | 'path';
  max: number;
}

/** A request's match in a mount that routes by its own rules (secrets, bulk). */
export interface OwnMatch {
  /** The label (a declared template, or one for requests no route serves). */
  template: string;
  /** The declared path whose operations name the request, if any. */
  path: RoutePath | undefined;
  /** The action when `path` has none for the method. */
  otherwise: string;
  namespace: string | null;
  auditPath: string | null;
}

/**
 * Requests under `prefix` (express `app.use(prefix, …)`), in the order express
 * tries them. `guard` runs before everything in the mount that is not a
 * public or login route, also before a 404: an unknown path under a guarded
 * mount answers 401 to a caller without a token, as it always has.
 */
export interface Mount {
  prefix: string;
  guard: 'token' | { kind: 'admin'; denied: string } | null;
  paths: RoutePath[];
  /** What `:name` segments name in audit entries. */
  names?: AuditName | undefined;
  /** Requests under the mount that no template matches. */
  unknown: { action: string; namespaceFromFirstSegment?: boolean | undefined };
  /**
   * A mount that routes by its own rules (secret paths hold `/` and `:action`):
   * `match` labels and describes a request from the path below the prefix, and
   * `dispatch` serves it (from the same declared paths).
   */
  own?:
    | {
        match(rest: string, pathname: string): OwnMatch;
        dispatch(serve: (req: Request, res: Response, path: RoutePath, method: string) => unknown): RequestHandler;
      }
    | undefined;
}

/** Erases an operation's query and body types so that operations of different shapes share one table. */
export function op<Q, B, T extends Target | undefined = undefined>(operation: Operation<Q, B, T>): Operation {
  return operation as unknown as Operation;
}

/** The `:name` segment of the request's path, percent-decoded (by express). */
export function nameParam(req: Request): string {
  const value = req.params.name;
  return typeof value === 'string' ? value : '';
}

/** The target of a `/:name` route that names a namespace (400 unless a valid name). */
export const namespaceParam = (req: Request): Target => ({ namespace: checkNamespaceName(nameParam(req)) });

/** A path served with one method. */
export function single(template: string, method: Method, operation: Operation): RoutePath {
  return { template, ops: { [method]: operation } };
}

/** The namespace (and secret path) a handler routed to, named in its audit entry instead of what the URL seems to say. */
export interface AuditTarget {
  namespace: string;
  path: string | undefined;
}

/** Names the version (of a secret or KMS key) a handler used, for its audit entry. */
export function auditVersion(res: Response, version: number): void {
  res.locals.auditVersion = version;
}

/**
 * Names the namespace (and secret path) a handler routed to, for its audit entry.
 * Handlers call it as soon as they know the target (before the policy check, so a
 * denied attempt is found by namespace too); some learn it only from the database
 * (escrow requests by id). Without it the entry is described from the URL.
 */
export function auditTarget(res: Response, namespace: string, path?: string): void {
  res.locals.auditTarget = { namespace, path } satisfies AuditTarget;
}
