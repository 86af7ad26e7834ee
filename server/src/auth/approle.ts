/**
 * AppRole machine identities: a role has a role_id (an identifier, like a
 * username) and any number of secret_ids (256 random bits each, shown once,
 * stored as SHA-256). A secret_id may expire, be limited to N uses and be
 * bound to CIDRs; it is listed and revoked by its accessor.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { CofferError } from '../errors.js';
import type { AppRoleRepo } from '../storage/repos/approle.js';
import type { LoginGuard } from './login-guard.js';
import { addressAllowed, loginFailed, validCidrs } from './login.js';
import type { AuthResponse, TokenService } from './tokens.js';

export const ROLE_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

const cidrList = z.array(z.string().max(64)).max(100).refine(validCidrs, 'CIDRs look like 10.0.0.0/8 or 2001:db8::/32');
const seconds = z.number().int().min(0).max(10 * 365 * 86_400);

export const appRoleConfigSchema = z
  .object({
    policies: z.array(z.string().min(1).max(64)).max(100).default([]),
    token_ttl: seconds.default(0),
    token_max_ttl: seconds.default(0),
    /** 0 = secret_ids do not expire. */
    secret_id_ttl: seconds.default(0),
    /** 0 = unlimited uses. */
    secret_id_num_uses: z.number().int().min(0).max(1_000_000).default(0),
    bound_cidrs: cidrList.default([]),
  })
  .strict();
export type AppRoleConfig = z.infer<typeof appRoleConfigSchema>;

export interface SecretIdInfo {
  accessor: string;
  cidrs: string[];
  uses_remaining: number | null;
  expires_at: string | null;
  created_at: string;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest();
/** Lockouts are by role_id (what a login names), hashed so the guard's memory holds no credential part. */
const roleSubject = (roleId: string) => `approle:${sha256(roleId).toString('base64url')}`;

export class AppRoleService {
  constructor(
    private readonly repo: AppRoleRepo,
    private readonly tokens: TokenService,
    private readonly guard: LoginGuard,
  ) {}

  async login(roleId: string, secretId: string, client: string): Promise<AuthResponse> {
    const subject = roleSubject(roleId);
    await this.guard.check(client, subject);
    const hash = sha256(secretId);
    const now = new Date();
    const found = await this.repo.transaction(async (trx) => {
      const role = await this.repo.findByRoleId(roleId, trx);
      const secret = await this.repo.lockSecretByHash(hash, trx);
      if (!role || !secret || secret.role_name !== role.name) return null;
      // The lookup was by hash; compare again in constant time so nothing hinges on index timing.
      if (!timingSafeEqual(Buffer.from(secret.secret_hash), hash)) return null;
      if (secret.expires_at && secret.expires_at <= now) return null;
      const config = appRoleConfigSchema.parse(role.config);
      if (!addressAllowed(client, secret.cidrs) || !addressAllowed(client, config.bound_cidrs)) return null;
      if (secret.uses_remaining !== null) await this.repo.spendUse(secret.accessor, secret.uses_remaining <= 1, trx);
      return { name: role.name, config };
    });
    if (!found) {
      await this.guard.failure(client, subject);
      throw loginFailed();
    }
    await this.guard.success(client, subject);
    const { config } = found;
    return this.tokens.issue({
      identity: `approle:${found.name}`,
      displayName: `approle-${found.name}`,
      policies: config.policies,
      metadata: { role: found.name },
      ttlSeconds: config.token_ttl || this.tokens.limits.defaultTtlSeconds,
      maxTtlSeconds: config.token_max_ttl || this.tokens.limits.maxTtlSeconds,
      renewable: true,
    });
  }

  async putRole(name: string, config: AppRoleConfig): Promise<{ created: boolean }> {
    checkRoleName(name);
    return this.repo.transaction(async (trx) => {
      const existed = await this.repo.lock(name, trx);
      if (existed) await this.repo.updateConfig(name, config, trx);
      else await this.repo.insert({ name, roleId: randomUUID(), config }, trx);
      return { created: !existed };
    });
  }

  async readRole(name: string): Promise<AppRoleConfig & { name: string }> {
    const row = await this.role(name);
    return { name: row.name, ...appRoleConfigSchema.parse(row.config) };
  }

  async listRoles(): Promise<string[]> {
    return this.repo.names();
  }

  /** Deletes the role, its secret_ids, and revokes every token it was issued. */
  async deleteRole(name: string): Promise<void> {
    await this.role(name);
    await this.repo.delete(name);
    await this.tokens.revokeIdentity(`approle:${name}`);
  }

  async roleId(name: string): Promise<string> {
    return (await this.role(name)).role_id;
  }

  /** Lifts the role's login lockout (on every server sharing the database); true if one was in force. */
  async unlock(name: string): Promise<boolean> {
    return this.guard.unlock(roleSubject((await this.role(name)).role_id));
  }

  /** A new secret_id; the value is returned here once and stored only as a hash. */
  async createSecretId(name: string, cidrs: string[]): Promise<{ secret_id: string; accessor: string; expires_at: string | null; uses_remaining: number | null }> {
    const role = await this.role(name);
    const config = appRoleConfigSchema.parse(role.config);
    const secretId = randomBytes(32).toString('base64url');
    const accessor = randomBytes(16).toString('base64url');
    const expiresAt = config.secret_id_ttl ? new Date(Date.now() + config.secret_id_ttl * 1000) : null;
    const uses = config.secret_id_num_uses || null;
    await this.repo.insertSecretId({ accessor, roleName: name, secretHash: sha256(secretId), cidrs, usesRemaining: uses, expiresAt });
    return { secret_id: secretId, accessor, expires_at: expiresAt?.toISOString() ?? null, uses_remaining: uses };
  }

  async listSecretIds(name: string): Promise<SecretIdInfo[]> {
    await this.role(name);
    const rows = await this.repo.liveSecretIds(name, new Date());
    return rows.map((r) => ({
      accessor: r.accessor,
      cidrs: r.cidrs,
      uses_remaining: r.uses_remaining,
      expires_at: r.expires_at?.toISOString() ?? null,
      created_at: r.created_at.toISOString(),
    }));
  }

  async revokeSecretId(name: string, accessor: string): Promise<void> {
    if (!(await this.repo.deleteSecretId(name, accessor))) throw new CofferError('not_found', 'no such secret_id accessor for this role');
  }

  private async role(name: string) {
    const row = ROLE_NAME.test(name) ? await this.repo.find(name) : undefined;
    if (!row) throw new CofferError('not_found', `role ${name} does not exist`);
    return row;
  }
}

export function checkRoleName(name: string): void {
  if (!ROLE_NAME.test(name)) throw new CofferError('invalid_request', 'role names are 1-64 characters of a-z, 0-9, _, . and -');
}
