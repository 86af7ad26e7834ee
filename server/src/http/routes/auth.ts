/**
 * /v1/auth: logins (no token needed) and token self-service; identity
 * administration (users, groups, AppRoles, JWT issuers and roles) and token
 * administration need server-wide admin rights.
 */
import { Router, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import { ROOT_POLICY, canDelegate, isAdmin, type Principal } from '../../policy/policy.js';
import { POLICY_NAME } from '../../auth/policy-store.js';
import { appRoleConfigSchema } from '../../auth/approle.js';
import { jwtIssuerSchema, jwtRoleSchema } from '../../auth/jwt.js';
import { certRoleSchema } from '../../auth/cert.js';
import { clientCertificateOf } from '../client-cert.js';
import { clientAddress, validCidrs } from '../../auth/login.js';
import type { AuthResponse } from '../../auth/tokens.js';
import { principalOf } from '../auth.js';
import { emptyQuery } from '../schemas.js';

const policyList = z
  .array(z.string().refine((p) => p === ROOT_POLICY || POLICY_NAME.test(p), 'policy names are a-z, 0-9, _ and -'))
  .max(100);
const ttl = z.number().int().min(1).max(10 * 365 * 86_400);

const userpassLogin = z.object({ username: z.string().min(1).max(128), password: z.string().min(1).max(1024) }).strict();
const approleLogin = z.object({ role_id: z.string().min(1).max(256), secret_id: z.string().min(1).max(256) }).strict();
const certLogin = z.object({ role: z.string().min(1).max(64) }).strict();
const jwtLogin = z.object({ role: z.string().min(1).max(64), jwt: z.string().min(1).max(16_384) }).strict();
const putUser = z
  .object({
    password: z.string().min(8, 'passwords are at least 8 characters').max(1024).optional(),
    policies: policyList.optional(),
    groups: z.array(z.string().min(1).max(64)).max(100).optional(),
  })
  .strict();
const putGroup = z.object({ policies: policyList.optional(), members: z.array(z.string().min(1).max(128)).max(10_000).optional() }).strict();
const createToken = z
  .object({
    policies: policyList.min(1),
    ttl: ttl.optional(),
    max_ttl: ttl.optional(),
    display_name: z.string().min(1).max(128).regex(/^[^\s]+$/, 'display names have no whitespace').optional(),
    renewable: z.boolean().default(true),
    metadata: z.record(z.string().min(1).max(64), z.string().max(512)).refine((m) => Object.keys(m).length <= 32, 'at most 32 metadata entries').optional(),
  })
  .strict();
const emptyBody = z.object({}).strict();
const renewBody = z.object({ increment: ttl.optional() }).strict();
const accessorBody = z.object({ accessor: z.string().min(1).max(64) }).strict();
const identityBody = z.object({ identity: z.string().min(1).max(512) }).strict();
const secretIdBody = z
  .object({ cidrs: z.array(z.string().max(64)).max(100).refine(validCidrs, 'CIDRs look like 10.0.0.0/8').default([]) })
  .strict();

const denied = (what: string) => new CofferError('permission_denied', `${what} needs admin rights`);

/** `public` routes take no token; the rest run behind `guarded` (unsealed + valid token). */
export function authRouter(core: CofferCore, requireUnsealed: RequestHandler, guarded: RequestHandler[]): Router {
  const router = Router({ caseSensitive: true });
  const admin = (res: Response, what: string): Principal => {
    const p = principalOf(res);
    if (!isAdmin(p)) throw denied(what);
    return p;
  };

  // --- logins ---
  const loggedIn = (res: Response, result: AuthResponse) => {
    // The audit entry names who logged in (no token was presented).
    const a = result.auth;
    res.locals.principal = { accessor: a.accessor, identity: a.identity, displayName: a.display_name, policies: a.policies } satisfies Principal;
    res.json(result);
  };
  router.post('/userpass/login', requireUnsealed, async (req, res) => {
    const body = userpassLogin.parse(req.body);
    loggedIn(res, await core.services().userpass.login(body.username, body.password, clientAddress(req.socket.remoteAddress)));
  });
  router.post('/approle/login', requireUnsealed, async (req, res) => {
    const body = approleLogin.parse(req.body);
    loggedIn(res, await core.services().approle.login(body.role_id, body.secret_id, clientAddress(req.socket.remoteAddress)));
  });
  router.post('/jwt/login', requireUnsealed, async (req, res) => {
    const body = jwtLogin.parse(req.body);
    loggedIn(res, await core.services().jwt.login(body.role, body.jwt, clientAddress(req.socket.remoteAddress)));
  });

  router.post('/cert/login', requireUnsealed, async (req, res) => {
    const body = certLogin.parse(req.body);
    loggedIn(res, await core.services().cert.login(body.role, clientCertificateOf(res), clientAddress(req.socket.remoteAddress)));
  });

  router.use(guarded);

  // --- token self-service ---
  router.get('/token/lookup-self', async (req, res) => {
    emptyQuery.parse(req.query);
    const info = await core.services().tokens.lookup(principalOf(res).accessor);
    if (!info) throw new CofferError('unauthenticated', 'token is invalid or revoked');
    res.json(info);
  });
  router.post('/token/renew-self', async (req, res) => {
    const body = renewBody.parse(req.body ?? {});
    res.json(await core.services().tokens.renew(principalOf(res).accessor, body.increment));
  });
  router.post('/token/revoke-self', async (_req, res) => {
    await core.services().tokens.revoke(principalOf(res).accessor);
    res.status(204).end();
  });

  // --- token administration ---
  router.post('/token/create', async (req, res) => {
    const caller = admin(res, 'creating tokens');
    const body = createToken.parse(req.body);
    if (!canDelegate(caller, body.policies)) {
      throw new CofferError('permission_denied', 'a token can only be given policies its creator holds');
    }
    const tokens = core.services().tokens;
    const maxTtl = body.max_ttl ?? tokens.limits.maxTtlSeconds;
    const result = await tokens.issue({
      identity: `token:${body.display_name ?? caller.displayName}`,
      displayName: body.display_name ?? `child-of-${caller.displayName}`,
      policies: body.policies,
      metadata: { ...body.metadata, created_by: caller.identity },
      ttlSeconds: Math.min(body.ttl ?? tokens.limits.defaultTtlSeconds, maxTtl),
      maxTtlSeconds: maxTtl,
      renewable: body.renewable,
    }, caller);
    res.status(201).json(result);
  });
  router.post('/token/lookup-accessor', async (req, res) => {
    admin(res, 'looking up other tokens');
    const info = await core.services().tokens.lookup(accessorBody.parse(req.body).accessor);
    if (!info) throw new CofferError('not_found', 'no live token has this accessor');
    res.json(info);
  });
  router.post('/token/revoke-accessor', async (req, res) => {
    admin(res, 'revoking other tokens');
    const revoked = await core.services().tokens.revoke(accessorBody.parse(req.body).accessor);
    if (!revoked) throw new CofferError('not_found', 'no live token has this accessor');
    res.status(204).end();
  });
  router.post('/token/revoke-identity', async (req, res) => {
    admin(res, 'revoking tokens');
    res.json({ revoked: await core.services().tokens.revokeIdentity(identityBody.parse(req.body).identity) });
  });

  // --- users, groups, AppRoles, JWT issuers and roles ---
  // Not even root may store `root` on a user, group or role: a login never yields root (the
  // token service strips it too), so such a row would only say something untrue.
  const noRoot = (policies: string[] | undefined) => {
    if (policies?.includes(ROOT_POLICY)) {
      throw new CofferError('invalid_request', 'the root policy cannot be given to a user, group or role: no login yields root (root tokens come from init and generate-root)');
    }
  };
  /**
   * A named resource administered with list / put / get / delete (users, groups, roles,
   * issuers). `put` answers 201 when it created the resource, 200 when it updated it, with
   * what a get would return.
   */
  const resource = <B>(
    path: string,
    plural: string,
    what: string,
    ops: {
      schema: z.ZodType<B>;
      policiesOf?: (body: B) => string[] | undefined;
      list(): Promise<string[]>;
      put(name: string, body: B): Promise<{ created: boolean }>;
      read(name: string): Promise<unknown>;
      remove(name: string): Promise<void>;
    },
  ) => {
    router.get(path, async (req, res) => {
      admin(res, `listing ${plural}`);
      emptyQuery.parse(req.query);
      res.json({ [plural.replace('-', '_')]: await ops.list() });
    });
    router.put(`${path}/:name`, async (req, res) => {
      admin(res, `managing ${plural}`);
      const body = ops.schema.parse(req.body);
      noRoot(ops.policiesOf?.(body));
      const { created } = await ops.put(req.params.name, body);
      res.status(created ? 201 : 200).json(await ops.read(req.params.name));
    });
    router.get(`${path}/:name`, async (req, res) => {
      admin(res, `reading ${plural}`);
      emptyQuery.parse(req.query);
      res.json(await ops.read(req.params.name));
    });
    router.delete(`${path}/:name`, async (req, res) => {
      admin(res, `deleting ${what}`);
      await ops.remove(req.params.name);
      res.status(204).end();
    });
  };
  const services = () => core.services();

  resource('/userpass/users', 'users', 'a user', {
    schema: putUser,
    policiesOf: (b) => b.policies,
    list: () => services().userpass.listUsers(),
    put: (name, body) => services().userpass.putUser(name, body),
    read: (name) => services().userpass.readUser(name),
    remove: (name) => services().userpass.deleteUser(name),
  });
  resource('/groups', 'groups', 'a group', {
    schema: putGroup,
    policiesOf: (b) => b.policies,
    list: () => services().userpass.listGroups(),
    put: (name, body) => services().userpass.putGroup(name, body),
    read: (name) => services().userpass.readGroup(name),
    remove: (name) => services().userpass.deleteGroup(name),
  });
  resource('/approle/roles', 'roles', 'a role', {
    schema: appRoleConfigSchema,
    policiesOf: (b) => b.policies,
    list: () => services().approle.listRoles(),
    put: (name, body) => services().approle.putRole(name, body),
    read: (name) => services().approle.readRole(name),
    remove: (name) => services().approle.deleteRole(name),
  });
  resource('/jwt/issuers', 'issuers', 'an issuer', {
    schema: jwtIssuerSchema,
    list: () => services().jwt.listIssuers(),
    put: (name, body) => services().jwt.putIssuer(name, body),
    read: (name) => services().jwt.readIssuer(name),
    remove: (name) => services().jwt.deleteIssuer(name),
  });
  resource('/jwt/roles', 'roles', 'a role', {
    schema: jwtRoleSchema,
    policiesOf: (b) => b.policies,
    list: () => services().jwt.listRoles(),
    put: (name, body) => services().jwt.putRole(name, body),
    read: (name) => services().jwt.readRole(name),
    remove: (name) => services().jwt.deleteRole(name),
  });

  resource('/cert/roles', 'roles', 'a role', {
    schema: certRoleSchema,
    policiesOf: (b) => b.policies,
    list: () => services().cert.listRoles(),
    put: (name, body) => services().cert.putRole(name, body),
    read: (name) => services().cert.readRole(name),
    remove: (name) => services().cert.deleteRole(name),
  });

  // --- lockouts (per server process: the counters are not shared between servers) ---
  router.post('/userpass/users/:name/unlock', async (req, res) => {
    admin(res, 'unlocking users');
    emptyBody.parse(req.body ?? {});
    res.json({ unlocked: services().userpass.unlock(req.params.name) });
  });
  router.post('/approle/roles/:name/unlock', async (req, res) => {
    admin(res, 'unlocking roles');
    emptyBody.parse(req.body ?? {});
    res.json({ unlocked: await services().approle.unlock(req.params.name) });
  });

  // --- AppRole role_id and secret_ids ---
  router.get('/approle/roles/:name/role-id', async (req, res) => {
    admin(res, 'reading role ids');
    emptyQuery.parse(req.query);
    res.json({ role_id: await services().approle.roleId(req.params.name) });
  });
  router.post('/approle/roles/:name/secret-id', async (req, res) => {
    admin(res, 'creating secret ids');
    const body = secretIdBody.parse(req.body ?? {});
    res.status(201).json(await services().approle.createSecretId(req.params.name, body.cidrs));
  });
  router.get('/approle/roles/:name/secret-ids', async (req, res) => {
    admin(res, 'listing secret ids');
    emptyQuery.parse(req.query);
    res.json({ secret_ids: await services().approle.listSecretIds(req.params.name) });
  });
  router.post('/approle/roles/:name/secret-id/revoke', async (req, res) => {
    admin(res, 'revoking secret ids');
    await services().approle.revokeSecretId(req.params.name, accessorBody.parse(req.body).accessor);
    res.status(204).end();
  });

  return router;
}
