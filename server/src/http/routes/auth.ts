/**
 * /v1/auth: logins (no token needed) and token self-service; identity
 * administration (auth-identity.ts: users, groups, AppRoles, JWT issuers and
 * roles, certificate roles) and token administration need server-wide admin rights.
 */
import type { Request, Response } from 'express';
import { z } from 'zod';
import { CofferError } from '../../errors.js';
import { canDelegate, type Principal } from '../../policy/policy.js';
import { clientCertificateOf } from '../client-cert.js';
import { clientAddress } from '../../auth/login.js';
import type { AuthResponse } from '../../auth/tokens.js';
import { principalOf } from '../auth.js';
import { op, single, type Mount, type RoutePath } from '../route.js';
import { emptyQuery } from '../schemas.js';
import { accessorBody, admin, identityPaths, policyList } from './auth-identity.js';

const ttl = z.number().int().min(1).max(10 * 365 * 86_400);

const userpassLogin = z.object({ username: z.string().min(1).max(128), password: z.string().min(1).max(1024) }).strict();
const approleLogin = z.object({ role_id: z.string().min(1).max(256), secret_id: z.string().min(1).max(256) }).strict();
const certLogin = z.object({ role: z.string().min(1).max(64) }).strict();
const jwtLogin = z.object({ role: z.string().min(1).max(64), jwt: z.string().min(1).max(16_384) }).strict();
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
const identityBody = z.object({ identity: z.string().min(1).max(512) }).strict();

const TOKEN = { kind: 'token' } as const;

// --- logins ---
const loggedIn = (res: Response, result: AuthResponse) => {
  // The audit entry names who logged in (no token was presented).
  const a = result.auth;
  res.locals.principal = { accessor: a.accessor, identity: a.identity, displayName: a.display_name, policies: a.policies } satisfies Principal;
  res.json(result);
};
const client = (req: Request) => clientAddress(req.socket.remoteAddress);

const logins: RoutePath[] = [
  single('/v1/auth/userpass/login', 'POST', op({
    action: 'auth.userpass.login',
    access: { kind: 'login' },
    body: userpassLogin,
    handler: async (req, res, { core, body: parse }) => {
      const body = parse();
      loggedIn(res, await core.services().userpass.login(body.username, body.password, client(req)));
    },
  })),
  single('/v1/auth/approle/login', 'POST', op({
    action: 'auth.approle.login',
    access: { kind: 'login' },
    body: approleLogin,
    handler: async (req, res, { core, body: parse }) => {
      const body = parse();
      loggedIn(res, await core.services().approle.login(body.role_id, body.secret_id, client(req)));
    },
  })),
  single('/v1/auth/jwt/login', 'POST', op({
    action: 'auth.jwt.login',
    access: { kind: 'login' },
    body: jwtLogin,
    handler: async (req, res, { core, body: parse }) => {
      const body = parse();
      loggedIn(res, await core.services().jwt.login(body.role, body.jwt, client(req)));
    },
  })),
  // The verified client certificate (mutual TLS) is handed to the login as a value.
  single('/v1/auth/cert/login', 'POST', op({
    action: 'auth.cert.login',
    access: { kind: 'login' },
    body: certLogin,
    handler: async (req, res, { core, body: parse }) => {
      const body = parse();
      loggedIn(res, await core.services().cert.login(body.role, clientCertificateOf(res), client(req)));
    },
  })),
];

// --- token self-service and administration ---
const tokens: RoutePath[] = [
  single('/v1/auth/token/lookup-self', 'GET', op({
    action: 'auth.token.lookup-self',
    access: TOKEN,
    query: emptyQuery,
    handler: async (_req, res, { core, query }) => {
      query();
      const info = await core.services().tokens.lookup(principalOf(res).accessor);
      if (!info) throw new CofferError('unauthenticated', 'token is invalid or revoked');
      res.json(info);
    },
  })),
  single('/v1/auth/token/renew-self', 'POST', op({
    action: 'auth.token.renew-self',
    access: TOKEN,
    body: renewBody,
    bodyMayBeAbsent: true,
    handler: async (_req, res, { core, body: parse }) => {
      const body = parse();
      res.json(await core.services().tokens.renew(principalOf(res).accessor, body.increment));
    },
  })),
  single('/v1/auth/token/revoke-self', 'POST', op({
    action: 'auth.token.revoke-self',
    access: TOKEN,
    handler: async (_req, res, { core }) => {
      await core.services().tokens.revoke(principalOf(res).accessor);
      res.status(204).end();
    },
  })),
  single('/v1/auth/token/create', 'POST', op({
    action: 'auth.token.create',
    access: admin('creating tokens'),
    body: createToken,
    handler: async (_req, res, { core, body: parse }) => {
      const caller = principalOf(res);
      const body = parse();
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
    },
  })),
  single('/v1/auth/token/lookup-accessor', 'POST', op({
    action: 'auth.token.lookup-accessor',
    access: admin('looking up other tokens'),
    body: accessorBody,
    handler: async (_req, res, { core, body }) => {
      const info = await core.services().tokens.lookup(body().accessor);
      if (!info) throw new CofferError('not_found', 'no live token has this accessor');
      res.json(info);
    },
  })),
  single('/v1/auth/token/revoke-accessor', 'POST', op({
    action: 'auth.token.revoke-accessor',
    access: admin('revoking other tokens'),
    body: accessorBody,
    handler: async (_req, res, { core, body }) => {
      const revoked = await core.services().tokens.revoke(body().accessor);
      if (!revoked) throw new CofferError('not_found', 'no live token has this accessor');
      res.status(204).end();
    },
  })),
  single('/v1/auth/token/revoke-identity', 'POST', op({
    action: 'auth.token.revoke-identity',
    access: admin('revoking tokens'),
    body: identityBody,
    handler: async (_req, res, { core, body }) => {
      res.json({ revoked: await core.services().tokens.revokeIdentity(body().identity) });
    },
  })),
];

/** Logins take no token; everything else under the mount (unknown paths too) needs one. */
export const authMount: Mount = {
  prefix: '/v1/auth',
  guard: 'token',
  names: { as: 'path', max: 128 },
  unknown: { action: 'auth.unknown' },
  paths: [...logins, ...tokens, ...identityPaths],
};
