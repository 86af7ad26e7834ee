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
const renewBody = z.object({ increment: ttl.optional() }).strict();
const accessorBody = z.object({ accessor: z.string().min(1).max(64) }).strict();
const identityBody = z.object({ identity: z.string().min(1).max(512) }).strict();
const secretIdBody = z
  .object({ cidrs: z.array(z.string().max(64)).max(100).refine(validCidrs, 'CIDRs look like 10.0.0.0/8').default([]) })
  .strict();

const denied = (what: string) => new CofferError(403, 'permission_denied', `${what} needs admin rights`);

/** `public` routes take no token; the rest run behind `guarded` (unsealed + valid token). */
export function authRouter(core: CofferCore, requireUnsealed: RequestHandler, guarded: RequestHandler[]): Router {
  const router = Router();
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

  router.use(guarded);

  // --- token self-service ---
  router.get('/token/lookup-self', async (req, res) => {
    emptyQuery.parse(req.query);
    const info = await core.services().tokens.lookup(principalOf(res).accessor);
    if (!info) throw new CofferError(401, 'unauthenticated', 'token is invalid or revoked');
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
      throw new CofferError(403, 'permission_denied', 'a token can only be given policies its creator holds');
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
    });
    res.status(201).json(result);
  });
  router.post('/token/lookup-accessor', async (req, res) => {
    admin(res, 'looking up other tokens');
    const info = await core.services().tokens.lookup(accessorBody.parse(req.body).accessor);
    if (!info) throw new CofferError(404, 'not_found', 'no live token has this accessor');
    res.json(info);
  });
  router.post('/token/revoke-accessor', async (req, res) => {
    admin(res, 'revoking other tokens');
    const revoked = await core.services().tokens.revoke(accessorBody.parse(req.body).accessor);
    if (!revoked) throw new CofferError(404, 'not_found', 'no live token has this accessor');
    res.status(204).end();
  });
  router.post('/token/revoke-identity', async (req, res) => {
    admin(res, 'revoking tokens');
    res.json({ revoked: await core.services().tokens.revokeIdentity(identityBody.parse(req.body).identity) });
  });

  // --- users and groups ---
  const noRootUnlessRoot = (caller: Principal, policies: string[] | undefined) => {
    if (policies?.includes(ROOT_POLICY) && !caller.policies.includes(ROOT_POLICY)) {
      throw new CofferError(403, 'permission_denied', 'only root can hand out the root policy');
    }
  };
  router.get('/userpass/users', async (req, res) => {
    admin(res, 'listing users');
    emptyQuery.parse(req.query);
    res.json({ users: await core.services().userpass.listUsers() });
  });
  router.put('/userpass/users/:name', async (req, res) => {
    const caller = admin(res, 'managing users');
    const body = putUser.parse(req.body);
    noRootUnlessRoot(caller, body.policies);
    const { created } = await core.services().userpass.putUser(req.params.name, body);
    res.status(created ? 201 : 200).json(await core.services().userpass.readUser(req.params.name));
  });
  router.get('/userpass/users/:name', async (req, res) => {
    admin(res, 'reading users');
    emptyQuery.parse(req.query);
    res.json(await core.services().userpass.readUser(req.params.name));
  });
  router.delete('/userpass/users/:name', async (_req, res) => {
    admin(res, 'deleting users');
    await core.services().userpass.deleteUser(_req.params.name);
    res.status(204).end();
  });
  router.get('/groups', async (req, res) => {
    admin(res, 'listing groups');
    emptyQuery.parse(req.query);
    res.json({ groups: await core.services().userpass.listGroups() });
  });
  router.put('/groups/:name', async (req, res) => {
    const caller = admin(res, 'managing groups');
    const body = putGroup.parse(req.body);
    noRootUnlessRoot(caller, body.policies);
    const { created } = await core.services().userpass.putGroup(req.params.name, body);
    res.status(created ? 201 : 200).json(await core.services().userpass.readGroup(req.params.name));
  });
  router.get('/groups/:name', async (req, res) => {
    admin(res, 'reading groups');
    emptyQuery.parse(req.query);
    res.json(await core.services().userpass.readGroup(req.params.name));
  });
  router.delete('/groups/:name', async (req, res) => {
    admin(res, 'deleting groups');
    await core.services().userpass.deleteGroup(req.params.name);
    res.status(204).end();
  });

  // --- AppRole ---
  router.get('/approle/roles', async (req, res) => {
    admin(res, 'listing roles');
    emptyQuery.parse(req.query);
    res.json({ roles: await core.services().approle.listRoles() });
  });
  router.put('/approle/roles/:name', async (req, res) => {
    const caller = admin(res, 'managing roles');
    const body = appRoleConfigSchema.parse(req.body);
    noRootUnlessRoot(caller, body.policies);
    const { created } = await core.services().approle.putRole(req.params.name, body);
    res.status(created ? 201 : 200).json(await core.services().approle.readRole(req.params.name));
  });
  router.get('/approle/roles/:name', async (req, res) => {
    admin(res, 'reading roles');
    emptyQuery.parse(req.query);
    res.json(await core.services().approle.readRole(req.params.name));
  });
  router.delete('/approle/roles/:name', async (req, res) => {
    admin(res, 'deleting roles');
    await core.services().approle.deleteRole(req.params.name);
    res.status(204).end();
  });
  router.get('/approle/roles/:name/role-id', async (req, res) => {
    admin(res, 'reading role ids');
    emptyQuery.parse(req.query);
    res.json({ role_id: await core.services().approle.roleId(req.params.name) });
  });
  router.post('/approle/roles/:name/secret-id', async (req, res) => {
    admin(res, 'creating secret ids');
    const body = secretIdBody.parse(req.body ?? {});
    res.status(201).json(await core.services().approle.createSecretId(req.params.name, body.cidrs));
  });
  router.get('/approle/roles/:name/secret-ids', async (req, res) => {
    admin(res, 'listing secret ids');
    emptyQuery.parse(req.query);
    res.json({ secret_ids: await core.services().approle.listSecretIds(req.params.name) });
  });
  router.post('/approle/roles/:name/secret-id/revoke', async (req, res) => {
    admin(res, 'revoking secret ids');
    await core.services().approle.revokeSecretId(req.params.name, accessorBody.parse(req.body).accessor);
    res.status(204).end();
  });

  // --- JWT/OIDC issuers and roles ---
  router.get('/jwt/issuers', async (req, res) => {
    admin(res, 'listing issuers');
    emptyQuery.parse(req.query);
    res.json({ issuers: await core.services().jwt.listIssuers() });
  });
  router.put('/jwt/issuers/:name', async (req, res) => {
    admin(res, 'configuring issuers');
    const { created } = await core.services().jwt.putIssuer(req.params.name, jwtIssuerSchema.parse(req.body));
    res.status(created ? 201 : 200).json(await core.services().jwt.readIssuer(req.params.name));
  });
  router.get('/jwt/issuers/:name', async (req, res) => {
    admin(res, 'reading issuers');
    emptyQuery.parse(req.query);
    res.json(await core.services().jwt.readIssuer(req.params.name));
  });
  router.delete('/jwt/issuers/:name', async (req, res) => {
    admin(res, 'deleting issuers');
    await core.services().jwt.deleteIssuer(req.params.name);
    res.status(204).end();
  });
  router.get('/jwt/roles', async (req, res) => {
    admin(res, 'listing roles');
    emptyQuery.parse(req.query);
    res.json({ roles: await core.services().jwt.listRoles() });
  });
  router.put('/jwt/roles/:name', async (req, res) => {
    const caller = admin(res, 'configuring roles');
    const body = jwtRoleSchema.parse(req.body);
    noRootUnlessRoot(caller, body.policies);
    const { created } = await core.services().jwt.putRole(req.params.name, body);
    res.status(created ? 201 : 200).json(await core.services().jwt.readRole(req.params.name));
  });
  router.get('/jwt/roles/:name', async (req, res) => {
    admin(res, 'reading roles');
    emptyQuery.parse(req.query);
    res.json(await core.services().jwt.readRole(req.params.name));
  });
  router.delete('/jwt/roles/:name', async (req, res) => {
    admin(res, 'deleting roles');
    await core.services().jwt.deleteRole(req.params.name);
    res.status(204).end();
  });

  return router;
}
