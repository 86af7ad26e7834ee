/**
 * The route table: every route the server serves, once. Express registration
 * (register.ts), the metrics and request-log label and the audit action
 * (route-template.ts) are all read from it. Adding a route is adding one
 * operation to one of the area files in routes/.
 *
 * Mounts are listed in the order express tries them; their templates never
 * overlap, so a request matches at most one declared path.
 */
import { auditMount } from './routes/audit.js';
import { authMount } from './routes/auth.js';
import { byokMount, escrowMount } from './routes/keys.js';
import { kmsMount } from './routes/kms.js';
import { namespacesMount } from './routes/namespaces.js';
import { capabilitiesMount, policiesMount } from './routes/policies.js';
import { bulkMount, secretsMount } from './routes/secrets.js';
import { sysMount } from './routes/sys.js';
import { METHODS, type Method, type Mount, type Operation, type RoutePath } from './route.js';

export const MOUNTS: readonly Mount[] = [
  auditMount,
  policiesMount,
  capabilitiesMount,
  sysMount,
  authMount,
  namespacesMount,
  secretsMount,
  bulkMount,
  byokMount,
  escrowMount,
  kmsMount,
];

/** One served route: a method on a path template. */
export interface Route {
  method: Method;
  template: string;
  mount: Mount;
  path: RoutePath;
  op: Operation;
}

/** Every route, flat, in table order. */
export const ROUTES: readonly Route[] = MOUNTS.flatMap((mount) =>
  mount.paths.flatMap((path) =>
    METHODS.flatMap((method) => {
      const op = path.ops[method];
      return op ? [{ method, template: path.template, mount, path, op }] : [];
    }),
  ),
);

/** The audit action of a request with `method` on `path` that no operation of it serves. */
export function otherwiseAction(path: RoutePath, method: string): string {
  const otherwise = path.otherwise;
  if (typeof otherwise === 'function') return otherwise(method);
  if (otherwise !== undefined) return otherwise;
  return Object.values(path.ops)[0]!.action;
}
