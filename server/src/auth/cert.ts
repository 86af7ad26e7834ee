/**
 * Machine identities by client certificate (mutual TLS). The TLS listener
 * verifies the chain against COFFER_TLS_CLIENT_CA_FILE; a role then says which
 * verified certificates it accepts (common name, DNS or URI SANs such as
 * SPIFFE IDs, organisation; globs allowed) and what their tokens get. A role
 * with no constraint accepts nothing: deny by default.
 */
import { z } from 'zod';
import { CofferError } from '../errors.js';
import { globMatcher } from '../policy/policy.js';
import type { CertRepo } from '../storage/repos/cert.js';
import { ROLE_NAME, checkRoleName } from './approle.js';
import type { LoginGuard } from './login-guard.js';
import type { AuthResponse, TokenService } from './tokens.js';

/**
 * A client certificate that chains to the configured client CA: what the TLS
 * listener verified (http/client-cert.ts), handed to the login as a value.
 */
export interface ClientCertificate {
  /** Subject fields, e.g. `{ CN: 'ci-runner', O: 'Acme' }` (repeated fields are arrays). */
  subject: Record<string, string | string[]>;
  issuer: Record<string, string | string[]>;
  serialNumber: string;
  /** SHA-256 fingerprint, colon-separated hex (as node prints it). */
  fingerprint256: string;
  validFrom: string;
  validTo: string;
  /** Subject alternative names by kind. */
  dnsNames: string[];
  uris: string[];
}

const globs = z.array(z.string().min(1).max(512)).max(100).default([]);
const seconds = z.number().int().min(0).max(10 * 365 * 86_400);

export const certRoleSchema = z
  .object({
    allowed_common_names: globs,
    allowed_dns_sans: globs,
    allowed_uri_sans: globs,
    allowed_organizations: globs,
    policies: z.array(z.string().min(1).max(64)).max(100).default([]),
    token_ttl: seconds.default(0),
    token_max_ttl: seconds.default(0),
  })
  .strict()
  .refine(
    (r) => r.allowed_common_names.length + r.allowed_dns_sans.length + r.allowed_uri_sans.length + r.allowed_organizations.length > 0,
    'a certificate role needs at least one of allowed_common_names, allowed_dns_sans, allowed_uri_sans, allowed_organizations',
  );
export type CertRoleConfig = z.infer<typeof certRoleSchema>;

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const anyMatch = (patterns: string[], values: string[]) => patterns.some((p) => values.some((v) => globMatcher(p)(v)));

export class CertAuthService {
  constructor(
    private readonly repo: CertRepo,
    private readonly tokens: TokenService,
    private readonly guard: LoginGuard,
  ) {}

  async login(roleName: string, cert: ClientCertificate | undefined, client: string): Promise<AuthResponse> {
    await this.guard.check(client, `cert:${roleName}`);
    if (!cert) {
      throw new CofferError('login_failed', 'certificate login needs a client certificate that chains to the server\'s client CA (mutual TLS)');
    }
    const row = ROLE_NAME.test(roleName) ? await this.repo.find(roleName) : undefined;
    if (!row) throw new CofferError('login_failed', `certificate login failed: role ${roleName} does not exist`);
    const role = certRoleSchema.parse(row.config);
    const cn = list(cert.subject.CN);
    // Every constraint the role sets must hold (an unset one is not checked).
    const checks: Array<[string, string[], string[]]> = [
      ['common name', role.allowed_common_names, cn],
      ['DNS SAN', role.allowed_dns_sans, cert.dnsNames],
      ['URI SAN', role.allowed_uri_sans, cert.uris],
      ['organisation', role.allowed_organizations, list(cert.subject.O)],
    ];
    for (const [what, patterns, values] of checks) {
      if (patterns.length > 0 && !anyMatch(patterns, values)) {
        await this.guard.failure(client, `cert:${roleName}`);
        throw new CofferError('permission_denied', `certificate login refused: the certificate's ${what} is not allowed by role ${roleName}`);
      }
    }
    await this.guard.success(client, `cert:${roleName}`);
    const name = cn[0] ?? cert.uris[0] ?? cert.dnsNames[0] ?? cert.serialNumber;
    return this.tokens.issue({
      identity: `cert:${roleName}:${name.slice(0, 256)}`,
      displayName: name.slice(0, 256),
      policies: role.policies,
      metadata: { role: roleName, serial: cert.serialNumber, fingerprint256: cert.fingerprint256, ...(cn[0] ? { common_name: cn[0] } : {}) },
      ttlSeconds: role.token_ttl || this.tokens.limits.defaultTtlSeconds,
      maxTtlSeconds: role.token_max_ttl || this.tokens.limits.maxTtlSeconds,
      renewable: true,
    });
  }

  async putRole(name: string, config: CertRoleConfig): Promise<{ created: boolean }> {
    checkRoleName(name);
    return this.repo.transaction(async (trx) => {
      const existed = await this.repo.lock(name, trx);
      if (existed) await this.repo.update(name, config, trx);
      else await this.repo.insert(name, config, trx);
      return { created: !existed };
    });
  }

  async readRole(name: string): Promise<CertRoleConfig & { name: string }> {
    const row = ROLE_NAME.test(name) ? await this.repo.find(name) : undefined;
    if (!row) throw new CofferError('not_found', `role ${name} does not exist`);
    return { name: row.name, ...certRoleSchema.parse(row.config) };
  }

  async listRoles(): Promise<string[]> {
    return this.repo.names();
  }

  async deleteRole(name: string): Promise<void> {
    const deleted = ROLE_NAME.test(name) && (await this.repo.delete(name));
    if (!deleted) throw new CofferError('not_found', `role ${name} does not exist`);
    await this.tokens.revokeIdentityPrefix(`cert:${name}:`);
  }
}
