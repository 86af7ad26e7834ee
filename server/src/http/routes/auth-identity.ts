/**
 * /v1/auth identity administration: users, groups, AppRoles (with their role_id
 * and secret_ids), JWT issuers and roles, certificate roles, and lockouts.
 * All of it needs server-wide admin rights.
 */
import { z } from 'zod';
import { CofferError } from '../../errors.js';
import { ROOT_POLICY } from '../../policy/policy.js';
import { POLICY_NAME } from '../../auth/policy-store.js';
import { appRoleConfigSchema } from '../../auth/approle.js';
import { jwtIssuerSchema, jwtRoleSchema } from '../../auth/jwt.js';
import { certRoleSchema } from '../../auth/cert.js';
import { validCidrs } from '../../auth/login.js';
import type { Services } from '../../vault/services.js';
import { nameParam, op, single, type RoutePath } from '../route.js';
import { emptyQuery } from '../schemas.js';

export const policyList = z
  .array(z.string().refine((p) => p === ROOT_POLICY || POLICY_NAME.test(p), 'policy names are a-z, 0-9, _ and -'))
  .max(100);
export const accessorBody = z.object({ accessor: z.string().min(1).max(64) }).strict();
export const admin = (what: string) => ({ kind: 'admin', denied: `${what} needs admin rights` }) as const;

const putUser = z
  .object({
    password: z.string().min(8, 'passwords are at least 8 characters').max(1024).optional(),
    policies: policyList.optional(),
    groups: z.array(z.string().min(1).max(64)).max(100).optional(),
  })
  .strict();
const putGroup = z.object({ policies: policyList.optional(), members: z.array(z.string().min(1).max(128)).max(10_000).optional() }).strict();
const emptyBody = z.object({}).strict();
const secretIdBody = z
  .object({ cidrs: z.array(z.string().max(64)).max(100).refine(validCidrs, 'CIDRs look like 10.0.0.0/8').default([]) })
  .strict();

// Not even root may store `root` on a user, group or role: a login never yields root (the
// token service strips it too), so such a row would only say something untrue.
const noRoot = (policies: string[] | undefined) => {
  if (policies?.includes(ROOT_POLICY)) {
    throw new CofferError('invalid_request', 'the root policy cannot be given to a user, group or role: no login yields root (root tokens come from init and generate-root)');
  }
};

/**
 * A named resource administered with list / put / get / delete (users, groups, roles,
 * issuers): `/v1/auth/{path}` and `/v1/auth/{path}/:name`. `put` answers 201 when it
 * created the resource, 200 when it updated it, with what a get would return.
 */
function resource<B>(
  path: string,
  plural: string,
  what: string,
  ops: {
    schema: z.ZodType<B>;
    policiesOf?: (body: B) => string[] | undefined;
    list(s: Services): Promise<string[]>;
    put(s: Services, name: string, body: B): Promise<{ created: boolean }>;
    read(s: Services, name: string): Promise<unknown>;
    remove(s: Services, name: string): Promise<void>;
  },
): RoutePath[] {
  const action = `auth.${path.replaceAll('/', '.')}`;
  return [
    {
      template: `/v1/auth/${path}`,
      otherwise: action,
      ops: {
        GET: op({
          action: `${action}.list`,
          access: admin(`listing ${plural}`),
          query: emptyQuery,
          handler: async (_req, res, { core, query }) => {
            query();
            res.json({ [plural.replace('-', '_')]: await ops.list(core.services()) });
          },
        }),
      },
    },
    {
      template: `/v1/auth/${path}/:name`,
      otherwise: `${action}.write`,
      ops: {
        PUT: op({
          action: `${action}.write`,
          access: admin(`managing ${plural}`),
          body: ops.schema,
          handler: async (req, res, { core, body: parse }) => {
            const body = parse();
            noRoot(ops.policiesOf?.(body));
            const { created } = await ops.put(core.services(), nameParam(req), body);
            res.status(created ? 201 : 200).json(await ops.read(core.services(), nameParam(req)));
          },
        }),
        GET: op({
          action: `${action}.read`,
          access: admin(`reading ${plural}`),
          query: emptyQuery,
          handler: async (req, res, { core, query }) => {
            query();
            res.json(await ops.read(core.services(), nameParam(req)));
          },
        }),
        DELETE: op({
          action: `${action}.delete`,
          access: admin(`deleting ${what}`),
          handler: async (req, res, { core }) => {
            await ops.remove(core.services(), nameParam(req));
            res.status(204).end();
          },
        }),
      },
    },
  ];
}

export const identityPaths: RoutePath[] = [
  ...resource('userpass/users', 'users', 'a user', {
    schema: putUser,
    policiesOf: (b) => b.policies,
    list: (s) => s.userpass.listUsers(),
    put: (s, name, body) => s.userpass.putUser(name, body),
    read: (s, name) => s.userpass.readUser(name),
    remove: (s, name) => s.userpass.deleteUser(name),
  }),
  ...resource('groups', 'groups', 'a group', {
    schema: putGroup,
    policiesOf: (b) => b.policies,
    list: (s) => s.userpass.listGroups(),
    put: (s, name, body) => s.userpass.putGroup(name, body),
    read: (s, name) => s.userpass.readGroup(name),
    remove: (s, name) => s.userpass.deleteGroup(name),
  }),
  ...resource('approle/roles', 'roles', 'a role', {
    schema: appRoleConfigSchema,
    policiesOf: (b) => b.policies,
    list: (s) => s.approle.listRoles(),
    put: (s, name, body) => s.approle.putRole(name, body),
    read: (s, name) => s.approle.readRole(name),
    remove: (s, name) => s.approle.deleteRole(name),
  }),
  ...resource('jwt/issuers', 'issuers', 'an issuer', {
    schema: jwtIssuerSchema,
    list: (s) => s.jwt.listIssuers(),
    put: (s, name, body) => s.jwt.putIssuer(name, body),
    read: (s, name) => s.jwt.readIssuer(name),
    remove: (s, name) => s.jwt.deleteIssuer(name),
  }),
  ...resource('jwt/roles', 'roles', 'a role', {
    schema: jwtRoleSchema,
    policiesOf: (b) => b.policies,
    list: (s) => s.jwt.listRoles(),
    put: (s, name, body) => s.jwt.putRole(name, body),
    read: (s, name) => s.jwt.readRole(name),
    remove: (s, name) => s.jwt.deleteRole(name),
  }),
  ...resource('cert/roles', 'roles', 'a role', {
    schema: certRoleSchema,
    policiesOf: (b) => b.policies,
    list: (s) => s.cert.listRoles(),
    put: (s, name, body) => s.cert.putRole(name, body),
    read: (s, name) => s.cert.readRole(name),
    remove: (s, name) => s.cert.deleteRole(name),
  }),

  // --- lockouts (kept in the database: an unlock on one server lifts them on all) ---
  single('/v1/auth/userpass/users/:name/unlock', 'POST', op({
    action: 'auth.userpass.users.unlock',
    access: admin('unlocking users'),
    body: emptyBody,
    bodyMayBeAbsent: true,
    handler: async (req, res, { core, body }) => {
      body();
      res.json({ unlocked: await core.services().userpass.unlock(nameParam(req)) });
    },
  })),
  single('/v1/auth/approle/roles/:name/unlock', 'POST', op({
    action: 'auth.approle.roles.unlock',
    access: admin('unlocking roles'),
    body: emptyBody,
    bodyMayBeAbsent: true,
    handler: async (req, res, { core, body }) => {
      body();
      res.json({ unlocked: await core.services().approle.unlock(nameParam(req)) });
    },
  })),

  // --- AppRole role_id and secret_ids ---
  single('/v1/auth/approle/roles/:name/role-id', 'GET', op({
    action: 'auth.approle.roles.role-id',
    access: admin('reading role ids'),
    query: emptyQuery,
    handler: async (req, res, { core, query }) => {
      query();
      res.json({ role_id: await core.services().approle.roleId(nameParam(req)) });
    },
  })),
  single('/v1/auth/approle/roles/:name/secret-id', 'POST', op({
    action: 'auth.approle.roles.secret-id',
    access: admin('creating secret ids'),
    body: secretIdBody,
    bodyMayBeAbsent: true,
    handler: async (req, res, { core, body: parse }) => {
      const body = parse();
      res.status(201).json(await core.services().approle.createSecretId(nameParam(req), body.cidrs));
    },
  })),
  single('/v1/auth/approle/roles/:name/secret-ids', 'GET', op({
    action: 'auth.approle.roles.secret-ids',
    access: admin('listing secret ids'),
    query: emptyQuery,
    handler: async (req, res, { core, query }) => {
      query();
      res.json({ secret_ids: await core.services().approle.listSecretIds(nameParam(req)) });
    },
  })),
  single('/v1/auth/approle/roles/:name/secret-id/revoke', 'POST', op({
    action: 'auth.approle.roles.secret-id.revoke',
    access: admin('revoking secret ids'),
    body: accessorBody,
    handler: async (req, res, { core, body }) => {
      await core.services().approle.revokeSecretId(nameParam(req), body().accessor);
      res.status(204).end();
    },
  })),
];
