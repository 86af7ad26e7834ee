/**
 * OIDC/JWT federation: a CI job (GitHub Actions, GitLab CI, a Kubernetes
 * service account) logs in with its platform's signed ID token, so the
 * pipeline stores no secret. An issuer is configured by OIDC discovery URL,
 * JWKS URL, or static public keys (air-gapped); a role binds audiences and
 * claims (exact or glob), names the claim that identifies the caller, maps
 * claims to token metadata, and gives policies and TTLs.
 *
 * JWKS are fetched by jose: cached, and refetched when a token names a key id
 * the cache does not know (key rotation), at most once per cooldown.
 * Issuer and role rows are read at each login (logins are not the hot path),
 * and the key cache is keyed by the issuer row's update time, so a changed
 * issuer takes effect on every server at its next login.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { CofferError } from '../errors.js';
import { globMatcher } from '../policy/policy.js';
import type { JwtRepo } from '../storage/repos/jwt.js';
import type { LoginGuard } from './login-guard.js';
import type { AuthResponse, TokenService } from './tokens.js';
import { ROLE_NAME, checkRoleName } from './approle.js';

/** Asymmetric algorithms only: a shared-secret (HS*) or `none` token is never accepted from an issuer. */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const httpUrl = z.string().url().max(2048).refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL');
const seconds = z.number().int().min(0).max(10 * 365 * 86_400);

export const jwtIssuerSchema = z
  .object({
    /** The `iss` claim tokens must carry. */
    issuer: z.string().min(1).max(2048),
    discovery_url: httpUrl.optional(),
    jwks_url: httpUrl.optional(),
    public_keys: z.array(z.string().min(1).max(16_384)).min(1).max(20).optional(),
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).default([...JWT_ALGORITHMS]),
    /** Allowed clock difference for exp/nbf/iat. */
    clock_skew_seconds: z.number().int().min(0).max(300).default(30),
  })
  .strict()
  .refine((c) => [c.discovery_url, c.jwks_url, c.public_keys].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of discovery_url, jwks_url or public_keys',
  })
  .refine((c) => c.public_keys === undefined || c.public_keys.every(isPublicKeyPem), {
    message: 'public_keys must be PEM public keys (-----BEGIN PUBLIC KEY-----)',
  });
export type JwtIssuerConfig = z.infer<typeof jwtIssuerSchema>;

const claimValue = z.union([z.string().max(1024), z.array(z.string().max(1024)).min(1).max(100)]);
const claimName = z.string().min(1).max(256);

export const jwtRoleSchema = z
  .object({
    issuer: z.string().min(1).max(64),
    bound_audiences: z.array(z.string().min(1).max(1024)).min(1).max(20),
    bound_subject: z.string().max(1024).optional(),
    /** Claim → required value(s). A claim named `/a/b` is looked up as a JSON pointer (nested claims). */
    bound_claims: z.record(claimName, claimValue).default({}),
    /** `exact`: values compare as strings; `glob`: `*` and `?` in the bound value are wildcards. */
    bound_claims_type: z.enum(['exact', 'glob']).default('exact'),
    user_claim: claimName.default('sub'),
    /** Claim → metadata key on the token (and in the audit log). */
    claim_mappings: z.record(claimName, z.string().min(1).max(64)).default({}),
    policies: z.array(z.string().min(1).max(64)).max(100).default([]),
    token_ttl: seconds.default(0),
    token_max_ttl: seconds.default(0),
  })
  .strict();
export type JwtRoleConfig = z.infer<typeof jwtRoleSchema>;

function isPublicKeyPem(pem: string): boolean {
  try {
    return createPublicKey(pem).type === 'public';
  } catch {
    return false;
  }
}

export interface JwtOptions {
  /** Minimum time between JWKS refetches triggered by an unknown `kid`. */
  jwksCooldownMs: number;
  /** How long fetched JWKS are trusted before a refetch. */
  jwksCacheMaxAgeMs: number;
  httpTimeoutMs: number;
}

interface KeySource {
  stamp: number;
  get: JWTVerifyGetKey | KeyObject[];
}

export class JwtAuthService {
  private readonly keySources = new Map<string, KeySource>();

  constructor(
    private readonly repo: JwtRepo,
    private readonly tokens: TokenService,
    private readonly guard: LoginGuard,
    private readonly options: JwtOptions,
  ) {}

  async login(roleName: string, token: string, client: string): Promise<AuthResponse> {
    await this.guard.check(client, `jwt:${roleName}`);
    const role = ROLE_NAME.test(roleName)
      ? await this.repo.findRole(roleName)
      : undefined;
    if (!role) throw invalidJwt(`role ${roleName} does not exist`);
    const config = jwtRoleSchema.parse(role.config);
    const issuerRow = await this.repo.findIssuer(role.issuer);
    if (!issuerRow) throw invalidJwt(`issuer ${role.issuer} does not exist`);
    const issuer = jwtIssuerSchema.parse(issuerRow.config);

    const claims = await this.verify(issuerRow.name, issuerRow.updated_at.getTime(), issuer, token);
    const audiences = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
    if (!audiences.some((a) => config.bound_audiences.includes(a))) {
      throw denied(`the token's audience (${audiences.join(', ') || 'none'}) is not one of the role's bound_audiences`);
    }
    if (config.bound_subject !== undefined && claims.sub !== config.bound_subject) throw denied('claim sub does not match the role\'s bound_subject');
    for (const [name, expected] of Object.entries(config.bound_claims)) {
      const actual = claimText(lookupClaim(claims, name));
      const wanted = Array.isArray(expected) ? expected : [expected];
      const ok =
        actual !== undefined &&
        wanted.some((w) => (config.bound_claims_type === 'glob' ? globMatcher(w)(actual) : w === actual));
      if (!ok) throw denied(`claim ${name} does not match the role's bound_claims`);
    }
    const user = claimText(lookupClaim(claims, config.user_claim));
    if (!user) throw denied(`the token has no ${config.user_claim} claim (the role's user_claim)`);
    const metadata: Record<string, string> = { role: role.name };
    for (const [claim, key] of Object.entries(config.claim_mappings)) {
      const value = claimText(lookupClaim(claims, claim));
      if (value !== undefined) metadata[key] = value.slice(0, 512);
    }
    return this.tokens.issue({
      identity: `jwt:${role.name}:${user.slice(0, 256)}`,
      displayName: user.slice(0, 256),
      policies: config.policies,
      metadata,
      ttlSeconds: config.token_ttl || this.tokens.limits.defaultTtlSeconds,
      maxTtlSeconds: config.token_max_ttl || this.tokens.limits.maxTtlSeconds,
      // A CI token is short-lived on purpose: the job logs in again rather than renewing past its max TTL.
      renewable: true,
    });
  }

  /** Checks signature, issuer, algorithm, expiry and not-before; returns the claims. */
  private async verify(name: string, stamp: number, issuer: JwtIssuerConfig, token: string): Promise<JWTPayload> {
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw invalidJwt('the token is not a JWT');
    }
    if (typeof header.alg !== 'string' || !(issuer.algorithms as string[]).includes(header.alg)) {
      throw invalidJwt(`algorithm ${String(header.alg)} is not accepted for this issuer`);
    }
    const source = await this.keySource(name, stamp, issuer);
    const options = { issuer: issuer.issuer, algorithms: issuer.algorithms, clockTolerance: issuer.clock_skew_seconds, requiredClaims: ['exp'] };
    try {
      if (Array.isArray(source.get)) {
        let last: unknown = new joseErrors.JWSSignatureVerificationFailed();
        for (const key of source.get) {
          try {
            return (await jwtVerify(token, key, options)).payload;
          } catch (err) {
            last = err;
          }
        }
        throw last;
      }
      return (await jwtVerify(token, source.get, options)).payload;
    } catch (err) {
      if (issuerUnreachable(err)) {
        throw new CofferError('unavailable', `the keys of issuer ${name} could not be fetched; try again later`, undefined, 5);
      }
      throw invalidJwt(describeJoseError(err));
    }
  }

  private async keySource(name: string, stamp: number, issuer: JwtIssuerConfig): Promise<KeySource> {
    const cached = this.keySources.get(name);
    if (cached && cached.stamp === stamp) return cached;
    let get: KeySource['get'];
    if (issuer.public_keys) {
      get = issuer.public_keys.map((pem) => createPublicKey(pem));
    } else {
      const jwksUrl = issuer.jwks_url ?? (await this.discover(issuer.discovery_url!, issuer.issuer));
      get = createRemoteJWKSet(new URL(jwksUrl), {
        cooldownDuration: this.options.jwksCooldownMs,
        cacheMaxAge: this.options.jwksCacheMaxAgeMs,
        timeoutDuration: this.options.httpTimeoutMs,
      });
    }
    const source = { stamp, get };
    this.keySources.set(name, source);
    return source;
  }

  /** Reads the OIDC discovery document and returns its jwks_uri (its `issuer` must match). */
  private async discover(discoveryUrl: string, expectedIssuer: string): Promise<string> {
    const url = discoveryUrl.includes('/.well-known/') ? discoveryUrl : `${discoveryUrl.replace(/\/$/, '')}/.well-known/openid-configuration`;
    let doc: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.options.httpTimeoutMs), redirect: 'error' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      doc = (await res.json()) as typeof doc;
    } catch (err) {
      throw new CofferError('unavailable', `OIDC discovery at ${url} failed: ${(err as Error).message}`);
    }
    if (doc.issuer !== expectedIssuer) throw new CofferError('unavailable', `OIDC discovery at ${url} names issuer ${String(doc.issuer)}, not ${expectedIssuer}`);
    if (typeof doc.jwks_uri !== 'string' || !/^https?:\/\//.test(doc.jwks_uri)) throw new CofferError('unavailable', `OIDC discovery at ${url} has no jwks_uri`);
    return doc.jwks_uri;
  }

  // --- configuration ---

  async putIssuer(name: string, config: JwtIssuerConfig): Promise<{ created: boolean }> {
    checkRoleName(name);
    return this.repo.transaction(async (trx) => {
      const existed = await this.repo.lockIssuer(name, trx);
      if (existed) await this.repo.updateIssuer(name, config, trx);
      else await this.repo.insertIssuer(name, config, trx);
      return { created: !existed };
    });
  }

  async readIssuer(name: string): Promise<JwtIssuerConfig & { name: string }> {
    const row = ROLE_NAME.test(name) ? await this.repo.findIssuer(name) : undefined;
    if (!row) throw new CofferError('not_found', `issuer ${name} does not exist`);
    return { name: row.name, ...jwtIssuerSchema.parse(row.config) };
  }

  async listIssuers(): Promise<string[]> {
    return this.repo.issuerNames();
  }

  async deleteIssuer(name: string): Promise<void> {
    const used = await this.repo.roleUsingIssuer(name);
    if (used !== undefined) throw new CofferError('conflict', `issuer ${name} is used by role ${used}; delete or move its roles first`);
    const deleted = ROLE_NAME.test(name) && (await this.repo.deleteIssuer(name));
    if (!deleted) throw new CofferError('not_found', `issuer ${name} does not exist`);
    this.keySources.delete(name);
  }

  async putRole(name: string, config: JwtRoleConfig): Promise<{ created: boolean }> {
    checkRoleName(name);
    if (!(await this.repo.issuerExists(config.issuer))) throw new CofferError('invalid_request', `issuer ${config.issuer} does not exist (PUT /v1/auth/jwt/issuers/${config.issuer} first)`);
    return this.repo.transaction(async (trx) => {
      const existed = await this.repo.lockRole(name, trx);
      if (existed) await this.repo.updateRole(name, config.issuer, config, trx);
      else await this.repo.insertRole(name, config.issuer, config, trx);
      return { created: !existed };
    });
  }

  async readRole(name: string): Promise<JwtRoleConfig & { name: string }> {
    const row = ROLE_NAME.test(name) ? await this.repo.findRole(name) : undefined;
    if (!row) throw new CofferError('not_found', `role ${name} does not exist`);
    return { name: row.name, ...jwtRoleSchema.parse(row.config) };
  }

  async listRoles(): Promise<string[]> {
    return this.repo.roleNames();
  }

  async deleteRole(name: string): Promise<void> {
    const deleted = ROLE_NAME.test(name) && (await this.repo.deleteRole(name));
    if (!deleted) throw new CofferError('not_found', `role ${name} does not exist`);
    await this.tokens.revokeIdentityPrefix(`jwt:${name}:`);
  }
}

/** A claim by name, or by JSON pointer (`/kubernetes.io/namespace`) for nested claims. */
export function lookupClaim(claims: JWTPayload, name: string): unknown {
  if (!name.startsWith('/')) return claims[name];
  let node: unknown = claims;
  for (const raw of name.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** Strings, numbers and booleans compare as text (GitLab's ref_protected is "true"). */
function claimText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** The issuer's JWKS endpoint is down or answering errors: not the caller's fault. */
function issuerUnreachable(err: unknown): boolean {
  if (err instanceof joseErrors.JWKSTimeout) return true;
  if (err instanceof joseErrors.JWKSInvalid) return true;
  if (err instanceof joseErrors.JOSEError) return err.code === 'ERR_JOSE_GENERIC' && /HTTP response/i.test(err.message);
  return true;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} is invalid (${err.reason})`;
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the issuer matches the token (unknown kid)';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature does not verify';
  if (err instanceof joseErrors.JWKSTimeout) return 'fetching the issuer\'s keys timed out';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'the token\'s algorithm is not allowed';
  if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid) return 'the token is malformed';
  if (err instanceof joseErrors.JOSEError) return `the token was refused (${err.code})`;
  return 'the issuer\'s keys could not be fetched';
}

function invalidJwt(reason: string): CofferError {
  return new CofferError('login_failed', `JWT login failed: ${reason}`);
}

function denied(reason: string): CofferError {
  return new CofferError('permission_denied', `JWT login refused: ${reason}`);
}
