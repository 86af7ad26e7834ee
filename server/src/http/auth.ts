/**
 * Token authentication with passport-jwt. The algorithm is pinned to HS256
 * and issuer/audience are checked, so `alg: none` and algorithm-confusion
 * tokens are refused. The key comes from the unsealed keyring at request time.
 */
import { createHash } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import passport from 'passport';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import type { CofferCore } from '../core.js';
import { CofferError, sealedError } from '../errors.js';
import { TOKEN_ALGORITHM, TOKEN_AUDIENCE, TOKEN_ISSUER, type TokenClaims } from '../auth/tokens.js';
import type { Principal } from '../policy/policy.js';

const STRATEGY = 'coffer-jwt';

const fromCofferHeader = (req: Request): string | null => {
  const value = req.headers['x-coffer-token'];
  return typeof value === 'string' && value.length > 0 ? value : null;
};

/** Registers the strategy on a private passport instance and returns the middleware. */
export function tokenAuth(core: CofferCore): RequestHandler {
  const authenticator = new passport.Passport();
  authenticator.use(
    STRATEGY,
    new JwtStrategy(
      {
        jwtFromRequest: ExtractJwt.fromExtractors([ExtractJwt.fromAuthHeaderAsBearerToken(), fromCofferHeader]),
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
    // A token passport-jwt already verified is recognised by its hash: the signature check
    // and claim parsing are most of a read's CPU. Revocation is still checked on every hit.
    const raw = bearerToken(req);
    const cacheKey = raw ? createHash('sha256').update(raw).digest('base64') : undefined;
    if (cacheKey) {
      const hit = core.services().tokens.verified.get(cacheKey);
      if (hit) {
        res.locals.principal = hit;
        return next();
      }
    }
    authenticator.authenticate(STRATEGY, { session: false }, (err: unknown, user: Principal | false, info: unknown) => {
      if (err) return next(err);
      if (!user) return next(unauthenticated(info));
      if (cacheKey) core.services().tokens.verified.set(cacheKey, user);
      res.locals.principal = user;
      next();
    })(req, res, next);
  };
}

/** The token as passport-jwt extracts it: `Authorization: Bearer …` first, then X-Coffer-Token. */
function bearerToken(req: Request): string | null {
  const header = req.headers.authorization;
  if (header) {
    const match = /^bearer\s+(\S+)$/i.exec(header);
    if (match) return match[1]!;
  }
  return fromCofferHeader(req);
}

function unauthenticated(info: unknown): CofferError {
  const name = (info as { name?: string } | undefined)?.name;
  const message =
    name === 'TokenExpiredError'
      ? 'token expired; log in again'
      : info instanceof Error && /No auth token/i.test(info.message)
        ? 'a token is required (Authorization: Bearer <token> or X-Coffer-Token)'
        : 'token is invalid or revoked';
  return new CofferError(401, 'unauthenticated', message);
}

export function principalOf(res: { locals: Record<string, unknown> }): Principal {
  const principal = res.locals.principal as Principal | undefined;
  if (!principal) throw new CofferError(401, 'unauthenticated', 'a token is required');
  return principal;
}
