/**
 * Thin wrappers over the admin API of identities and policies (needs an admin
 * token). Bodies go as given: the server validates them and answers 400 with
 * the reason, so the SDK does not repeat those rules.
 */
import type { ApproleOptions, JwtIssuer, JwtRole, Policy, SecretIdResult, UserOptions } from './api/index.js';
import { invalidArgument } from './errors.js';
import type { Transport } from './transport.js';

export type { ApproleOptions, JwtIssuer, JwtRole, Policy, PolicyRule, SecretIdResult, UserOptions } from './api/index.js';

/** One URL segment: names with '/', '..' or nothing would address another resource. */
function seg(kind: string, name: string): string {
  if (!name || name === '.' || name === '..' || /[/\\?#%\s]/.test(name)) throw invalidArgument(`invalid ${kind} name`);
  return encodeURIComponent(name);
}

export class AdminApi {
  constructor(private readonly http: Transport) {}

  // Policies
  async listPolicies(): Promise<unknown> {
    return this.http.request({ method: 'GET', path: '/v1/sys/policies' });
  }
  async getPolicy(name: string): Promise<Policy> {
    return this.http.request({ method: 'GET', path: `/v1/sys/policies/${seg('policy', name)}` });
  }
  /** Creates or replaces a policy (repeatable: same body, same result). */
  async putPolicy(name: string, policy: Policy): Promise<unknown> {
    return this.http.request({ method: 'PUT', path: `/v1/sys/policies/${seg('policy', name)}`, body: { rules: policy.rules }, idempotent: true });
  }
  async deletePolicy(name: string): Promise<void> {
    await this.http.request({ method: 'DELETE', path: `/v1/sys/policies/${seg('policy', name)}`, idempotent: true });
  }

  // userpass users and groups
  async listUsers(): Promise<unknown> {
    return this.http.request({ method: 'GET', path: '/v1/auth/userpass/users' });
  }
  async putUser(username: string, options: UserOptions): Promise<unknown> {
    return this.http.request({ method: 'PUT', path: `/v1/auth/userpass/users/${seg('user', username)}`, body: options, idempotent: true });
  }
  async deleteUser(username: string): Promise<void> {
    await this.http.request({ method: 'DELETE', path: `/v1/auth/userpass/users/${seg('user', username)}`, idempotent: true });
  }
  /** Lifts the user's login lockout on the server that answers (lockout counters are per server process). */
  async unlockUser(username: string): Promise<{ unlocked: boolean }> {
    return this.http.request({ method: 'POST', path: `/v1/auth/userpass/users/${seg('user', username)}/unlock`, body: {}, idempotent: true });
  }
  async putGroup(name: string, options: { policies: string[]; members?: string[] }): Promise<unknown> {
    return this.http.request({ method: 'PUT', path: `/v1/auth/groups/${seg('group', name)}`, body: options, idempotent: true });
  }

  // AppRole
  async putApprole(role: string, options: ApproleOptions): Promise<unknown> {
    return this.http.request({ method: 'PUT', path: `/v1/auth/approle/roles/${seg('role', role)}`, body: options, idempotent: true });
  }
  async getApprole(role: string): Promise<unknown> {
    return this.http.request({ method: 'GET', path: `/v1/auth/approle/roles/${seg('role', role)}` });
  }
  async deleteApprole(role: string): Promise<void> {
    await this.http.request({ method: 'DELETE', path: `/v1/auth/approle/roles/${seg('role', role)}`, idempotent: true });
  }
  async roleId(role: string): Promise<string> {
    const r = await this.http.request<{ role_id: string }>({ method: 'GET', path: `/v1/auth/approle/roles/${seg('role', role)}/role-id` });
    return r.role_id;
  }
  /** A new secret id: not retried (each call mints one). */
  async createSecretId(role: string, options: { cidrs?: string[] } = {}): Promise<SecretIdResult> {
    return this.http.request({ method: 'POST', path: `/v1/auth/approle/roles/${seg('role', role)}/secret-id`, body: options, idempotent: false });
  }
  async listSecretIds(role: string): Promise<unknown> {
    return this.http.request({ method: 'GET', path: `/v1/auth/approle/roles/${seg('role', role)}/secret-ids` });
  }
  async revokeSecretId(role: string, accessor: string): Promise<void> {
    await this.http.request({ method: 'POST', path: `/v1/auth/approle/roles/${seg('role', role)}/secret-id/revoke`, body: { accessor }, idempotent: true });
  }

  // Client certificates (mutual TLS)
  async putCertRole(role: string, options: Record<string, unknown>): Promise<unknown> {
    return this.http.request({ method: 'PUT', path: `/v1/auth/cert/roles/${seg('role', role)}`, body: options, idempotent: true });
  }
  async getCertRole(role: string): Promise<unknown> {
    return this.http.request({ method: 'GET', path: `/v1/auth/cert/roles/${seg('role', role)}` });
  }
  async deleteCertRole(role: string): Promise<void> {
    await this.http.request({ method: 'DELETE', path: `/v1/auth/cert/roles/${seg('role', role)}`, idempotent: true });
  }

  // JWT / OIDC
  async putJwtIssuer(name: string, issuer: JwtIssuer): Promise<unknown> {
    return this.http.request({ method: 'PUT', path: `/v1/auth/jwt/issuers/${seg('issuer', name)}`, body: issuer, idempotent: true });
  }
  async putJwtRole(role: string, options: JwtRole): Promise<unknown> {
    return this.http.request({ method: 'PUT', path: `/v1/auth/jwt/roles/${seg('role', role)}`, body: options, idempotent: true });
  }
  async getJwtRole(role: string): Promise<unknown> {
    return this.http.request({ method: 'GET', path: `/v1/auth/jwt/roles/${seg('role', role)}` });
  }
  async deleteJwtRole(role: string): Promise<void> {
    await this.http.request({ method: 'DELETE', path: `/v1/auth/jwt/roles/${seg('role', role)}`, idempotent: true });
  }
}
