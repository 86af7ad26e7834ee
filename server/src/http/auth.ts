/**
 * Token authentication with passport-jwt. The algorithm is pinned to HS256
 * and issuer/audience are checked, so `alg: none` and algorithm-confusion
 * tokens are refused. The key comes from the unsealed keyring at request time.
 *
 * The token is taken from the request in one place (requestToken) by one
 * rule, and that exact string is what passport-jwt verifies and what the
 * verified-token cache is keyed by: a request can never be verified as one
 * token and remembered as another.
 */
import { hash } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import passport from 'passport';
import { Strategy as JwtStrategy } from 'passport-jwt';
import type { CofferCore } from '../core.js';
import { CofferError, sealedError } from '../errors.js';
import { TOKEN_ALGORITHM, TOKEN_AUDIENCE, TOKEN_ISSUER, type TokenClaims } from '../auth/tokens.js';
import type { Principal } from '../policy/policy.js';

const STRATEGY = 'coffer-jwt';

/** RFC 6750's b64token (a JWT is three base64url parts joined by dots); bounded so a header cannot be huge. */
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const MAX_TOKEN_LENGTH = 8192;
const BEARER = /^Bearer +(\S+) *$/i;

/** The request's token, parsed here once: passport-jwt is handed exactly this string. */
const parsedToken = new WeakMap<Request, string>();

/** Registers the strategy on a private passport instance and returns the middleware. */
export function tokenAuth(core: CofferCore): RequestHandler {
  const authenticator = new passport.Passport();
  authenticator.use(
    STRATEGY,
    new JwtStrategy(
      {
        jwtFromRequest: (req: Request) => parsedToken.get(req) ?? null,
        secretOrKeyProvider: (_req, _raw, done) => {
          try {
            const key = core.services().tokens.verificationKey;
            if (!key) throw sealedError();
            // passport-jwt's types say string | Buffer; jsonwebtoken takes a KeyObject too.
            done(null, key as unknown as Buffer);
          } catch (err) {
            done(err as Error);
          }
        },
        algorithms: [TOKEN_ALGORITHM],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
      },
      (claims: Partial<TokenClaims>, done: (err: Error | null, user?: Principal | false) => void) => {
        try {
          done(null, core.services().tokens.principalFor(claims) ?? false);
        } catch (err) {
          done(err as Error);
        }
      },
    ),
  );
  return (req, res, next) => {
    let raw: string | null;
    try {
      raw = requestToken(req);
    } catch (err) {
      return next(err);
    }
    if (raw === null) return next(new CofferError('unauthenticated', 'a token is required (Authorization: Bearer <token> or X-Coffer-Token)'));
    // A token passport-jwt already verified is recognised by its hash: the signature check
    // and claim parsing are most of a read's CPU. Revocation is still checked on every hit.
    const cacheKey = hash('sha256', raw, 'base64');
    const hit = core.services().tokens.verified.get(cacheKey);
    if (hit) {
      res.locals.principal = hit;
      return next();
    }
    parsedToken.set(req, raw);
    authenticator.authenticate(STRATEGY, { session: false }, (err: unknown, user: Principal | false, info: unknown) => {
      if (err) return next(err);
      if (!user) return next(unauthenticated(info));
      core.services().tokens.verified.set(cacheKey, user);
      res.locals.principal = user;
      next();
    })(req, res, next);
  };
}

/**
 * The one rule for where a token comes from: `Authorization: Bearer <token>`
 * or `X-Coffer-Token: <token>` (an empty header counts as absent). Both may be
 * sent only with the same token (else 400); a malformed value of either is
 * refused (401) rather than skipped, so no header is ever silently passed over
 * for the other. Null when there is no token.
 */
export function requestToken(req: Request): string | null {
  const authorization = present(req.headers.authorization);
  let fromAuthorization: string | null = null;
  if (authorization !== null) {
    const match = BEARER.exec(authorization);
    if (!match) throw invalidToken('the Authorization header must be "Bearer <token>"');
    fromAuthorization = checkToken(match[1]!);
  }
  const other = present(req.headers['x-coffer-token']);
  const fromCoffer = other === null ? null : checkToken(other);
  if (fromAuthorization !== null && fromCoffer !== null && fromAuthorization !== fromCoffer) {
    throw new CofferError('invalid_request', 'the Authorization and X-Coffer-Token headers carry different tokens; send one');
  }
  return fromAuthorization ?? fromCoffer;
}

function present(value: string | string[] | undefined): string | null {
  // Node joins a repeated custom header with ", ", which the token syntax then refuses.
  const text = Array.isArray(value) ? value.join(', ') : value;
  return text === undefined || text.trim() === '' ? null : text.trim();
}

function checkToken(value: string): string {
  if (value.length > MAX_TOKEN_LENGTH || !TOKEN.test(value)) throw invalidToken('the token is malformed');
  return value;
}

function invalidToken(reason: string): CofferError {
  return new CofferError('unauthenticated', `token is invalid: ${reason}`);
}

function unauthenticated(info: unknown): CofferError {
  const name = (info as { name?: string } | undefined)?.name;
  return new CofferError('unauthenticated', name === 'TokenExpiredError' ? 'token expired; log in again' : 'token is invalid or revoked');
}

export function principalOf(res: { locals: Record<string, unknown> }): Principal {
  const principal = res.locals.principal as Principal | undefined;
  if (!principal) throw new CofferError('unauthenticated', 'a token is required');
  return principal;
}
