/**
 * Coffer tokens are JWTs (HS256, algorithm pinned) signed with the server's
 * token key, which lives in the system keyring wrapped by the root key. A
 * token check is one HMAC plus an in-memory revocation lookup: no database
 * round trip and no slow hash on the request path.
 *
 * Every token has a row (by accessor = the JWT's `jti`) holding its identity,
 * policies, expiry, renewability and revocation. Renewing signs a new JWT for
 * the same accessor with a later expiry (a JWT cannot be extended in place);
 * revoking the accessor ends every JWT issued for it. Revocations reach other
 * servers through the change feed within the NOTIFY delay.
 */
import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import type { AuthResponse, TokenInfo } from '@coffer/sdk/api';
import jwt from 'jsonwebtoken';
import { changeEvents, encodeChange } from '../cluster/events.js';
import type { ChangeFeed } from '../storage/change-feed.js';
import type { TokensRepo } from '../storage/repos/tokens.js';
import { zeroize, type KeyMaterial } from '../crypto/aead.js';
import { ROOT_POLICY, type PolicyLookup, type Principal } from '../policy/policy.js';
import { CofferError } from '../errors.js';
import { VerifiedTokenCache } from './verified-tokens.js';

export type { AuthResponse, TokenInfo } from '@coffer/sdk/api';

export const TOKEN_ISSUER = 'coffer';
export const TOKEN_AUDIENCE = 'coffer';
export const TOKEN_ALGORITHM = 'HS256';
export const TOKEN_SIGNING_KEY = 'token-signing';

/** Claims Coffer puts in its tokens besides the registered ones. */
export interface TokenClaims {
  exp?: number;
  sub: string;
  jti: string;
  name: string;
  pol: string[];
}

export interface TokenSpec {
  identity: string;
  displayName: string;
  policies: string[];
  metadata?: Record<string, string>;
  /** Lifetime of the first JWT. */
  ttlSeconds: number;
  /** Renewals never go past created + maxTtlSeconds. */
  maxTtlSeconds: number;
  renewable: boolean;
}

export interface TokenLimits {
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
}

export function newAccessor(): string {
  return randomBytes(16).toString('base64url');
}

/** Signs a token with `key`; usable before a TokenService exists (at init). */
export function signToken(key: KeyMaterial | KeyObject, claims: TokenClaims, ttlSeconds?: number): string {
  const secret = 'byteLength' in key ? Buffer.from(key.buffer, key.byteOffset, key.byteLength) : key;
  return jwt.sign(claims, secret, {
    algorithm: TOKEN_ALGORITHM,
    issuer: TOKEN_ISSUER,
    audience: TOKEN_AUDIENCE,
    notBefore: 0,
    ...(ttlSeconds ? { expiresIn: ttlSeconds } : {}),
  });
}

export function rootTokenClaims(accessor: string): TokenClaims {
  return { sub: 'root', jti: accessor, name: 'root', pol: [ROOT_POLICY] };
}

/** `policies` without `root` unless `parent` itself holds root. */
export function grantablePolicies(policies: readonly string[], parent?: Principal): string[] {
  const parentIsRoot = parent?.policies.includes(ROOT_POLICY) ?? false;
  return [...new Set(policies.filter((p) => p !== ROOT_POLICY || parentIsRoot))];
}

export function tokensChange(): string {
  return encodeChange(changeEvents.tokens());
}

export class TokenService {
  private revoked = new Set<string>();
  /**
   * The signing key as a secret KeyObject. Handed a raw Buffer, jsonwebtoken
   * first tries to parse it as a public key on every verification and fails
   * (~300 µs); a KeyObject verifies in ~6 µs. Node keeps the bytes in native
   * memory and clears them (OPENSSL_clear_free) when the object is collected,
   * so the raw copy is zeroed at once and the KeyObject dropped on seal.
   */
  verificationKey: KeyObject | null;
  readonly verified = new VerifiedTokenCache(10_000, (accessor) => this.revoked.has(accessor));

  constructor(
    private readonly repo: TokensRepo,
    signingKey: KeyMaterial,
    private readonly feed: ChangeFeed,
    private readonly grants: PolicyLookup,
    readonly limits: TokenLimits,
  ) {
    this.verificationKey = createSecretKey(signingKey);
    zeroize(signingKey);
  }

  /** Loads the revocation list: at unseal, on every token change notification and when the feed reconnects. */
  async load(): Promise<void> {
    const next = new Set(await this.repo.revokedUnexpired(new Date()));
    // Keep local revocations a concurrent reload could have missed (the row is committed before we add it).
    for (const accessor of this.revoked) next.add(accessor);
    this.revoked = next;
  }

  /** Maps verified claims to a principal, or null when the token was revoked or is malformed. */
  principalFor(claims: Partial<TokenClaims>): Principal | null {
    if (typeof claims.jti !== 'string' || typeof claims.sub !== 'string' || !Array.isArray(claims.pol)) return null;
    if (this.revoked.has(claims.jti)) return null;
    return {
      accessor: claims.jti,
      identity: claims.sub,
      displayName: typeof claims.name === 'string' ? claims.name : claims.sub,
      policies: claims.pol.filter((p): p is string => typeof p === 'string'),
      expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : undefined,
      grants: this.grants,
    };
  }

  isRevoked(accessor: string): boolean {
    return this.revoked.has(accessor);
  }

  /**
   * Creates a token row and signs its first JWT. Every login and token/create
   * ends here, so this is where `root` is kept out: a token holds root only
   * when its parent token does (a root token's child, as in Vault). A login
   * has no parent, so whatever a user, group or role row says, no login ever
   * yields root; root tokens otherwise come only from init and generate-root.
   */
  async issue(spec: TokenSpec, parent?: Principal): Promise<AuthResponse> {
    const policies = grantablePolicies(spec.policies, parent);
    const maxTtl = Math.min(spec.maxTtlSeconds, this.limits.maxTtlSeconds);
    const ttl = Math.max(1, Math.min(spec.ttlSeconds, maxTtl));
    const accessor = newAccessor();
    const now = Date.now();
    const expiresAt = new Date(now + ttl * 1000);
    const maxExpiresAt = new Date(now + maxTtl * 1000);
    const metadata = spec.metadata ?? {};
    await this.repo.insert({
      accessor,
      identity: spec.identity,
      display_name: spec.displayName,
      policies: JSON.stringify(policies),
      metadata: JSON.stringify(metadata),
      renewable: spec.renewable,
      expires_at: expiresAt,
      max_expires_at: maxExpiresAt,
      ttl_seconds: ttl,
    });
    return this.respond(
      { accessor, identity: spec.identity, displayName: spec.displayName, policies, metadata, renewable: spec.renewable },
      expiresAt,
      maxExpiresAt,
    );
  }

  /** A new root token (no expiry, root policy): only after the operators' shares were checked. */
  async issueRoot(): Promise<string> {
    const key = this.verificationKey;
    if (!key) throw new Error('token service is closed');
    const accessor = newAccessor();
    await this.repo.insertRoot(accessor);
    return signToken(key, rootTokenClaims(accessor));
  }

  /** A new JWT for the same accessor with a later expiry, never past the token's max TTL. */
  async renew(accessor: string, incrementSeconds?: number): Promise<AuthResponse> {
    const row = await this.repo.find(accessor);
    if (!row || row.revoked_at || this.revoked.has(accessor)) throw new CofferError('unauthenticated', 'token is invalid or revoked');
    if (!row.renewable || !row.expires_at || !row.max_expires_at) {
      throw new CofferError('not_renewable', 'this token cannot be renewed; log in again');
    }
    const now = Date.now();
    if (row.expires_at.getTime() <= now) throw new CofferError('unauthenticated', 'token expired; log in again');
    const increment = incrementSeconds ?? row.ttl_seconds ?? this.limits.defaultTtlSeconds;
    const expiresAt = new Date(Math.min(now + increment * 1000, row.max_expires_at.getTime()));
    if (expiresAt.getTime() - now < 1000) {
      throw new CofferError('not_renewable', 'this token has reached its maximum lifetime; log in again');
    }
    await this.repo.extend(accessor, expiresAt);
    return this.respond(
      {
        accessor,
        identity: row.identity,
        displayName: row.display_name,
        policies: row.policies,
        metadata: row.metadata,
        renewable: true,
      },
      expiresAt,
      row.max_expires_at,
    );
  }

  async lookup(accessor: string): Promise<TokenInfo | null> {
    const row = await this.repo.find(accessor);
    if (!row || row.revoked_at || this.revoked.has(accessor)) return null;
    if (row.expires_at && row.expires_at.getTime() <= Date.now()) return null;
    return {
      accessor: row.accessor,
      identity: row.identity,
      display_name: row.display_name,
      policies: row.policies,
      metadata: row.metadata,
      created_at: row.created_at.toISOString(),
      expires_at: row.expires_at ? row.expires_at.toISOString() : null,
      max_expires_at: row.max_expires_at ? row.max_expires_at.toISOString() : null,
      renewable: row.renewable,
    };
  }

  /** Revokes one accessor (every JWT issued for it); true if it was live. */
  async revoke(accessor: string): Promise<boolean> {
    const updated = await this.repo.transaction(async (trx) => {
      const live = await this.repo.revoke(accessor, trx);
      await this.feed.publish(trx, tokensChange());
      return live;
    });
    this.revoked.add(accessor);
    return updated;
  }

  /** Revokes every live token of an identity (a user removed, a role deleted, an incident). */
  revokeIdentity(identity: string): Promise<number> {
    return this.revokeWhere(identity, false);
  }

  /** Revokes every live token whose identity starts with `prefix` (e.g. `jwt:deploy:` when that role is deleted). */
  revokeIdentityPrefix(prefix: string): Promise<number> {
    return this.revokeWhere(prefix, true);
  }

  private async revokeWhere(identity: string, prefix: boolean): Promise<number> {
    const accessors = await this.repo.transaction(async (trx) => {
      const revoked = await this.repo.revokeIdentity(identity, prefix, trx);
      if (revoked.length > 0) await this.feed.publish(trx, tokensChange());
      return revoked;
    });
    for (const accessor of accessors) this.revoked.add(accessor);
    return accessors.length;
  }

  destroy(): void {
    this.verificationKey = null;
    this.verified.clear();
    this.revoked.clear();
  }

  private respond(
    t: { accessor: string; identity: string; displayName: string; policies: string[]; metadata: Record<string, string>; renewable: boolean },
    expiresAt: Date,
    maxExpiresAt: Date,
  ): AuthResponse {
    const key = this.verificationKey;
    if (!key) throw new Error('token service is closed');
    const lease = Math.max(1, Math.round((expiresAt.getTime() - Date.now()) / 1000));
    const claims: TokenClaims = { sub: t.identity, jti: t.accessor, name: t.displayName, pol: t.policies };
    return {
      auth: {
        client_token: signToken(key, claims, lease),
        accessor: t.accessor,
        identity: t.identity,
        display_name: t.displayName,
        policies: t.policies,
        metadata: t.metadata,
        lease_duration: lease,
        expires_at: expiresAt.toISOString(),
        max_expires_at: maxExpiresAt.toISOString(),
        renewable: t.renewable,
      },
    };
  }
}
