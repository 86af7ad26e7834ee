/** `/v1/auth` and `/v1/sys/policies`: tokens, logins, policies and identities. */

/**
 * Capabilities on secrets and namespaces, then on named keys (KMS), whose
 * rules' `path` glob matches the key name. The order is the policy model's bit
 * order: new capabilities go at the end.
 */
export const SECRET_CAPABILITIES = ['read', 'list', 'create', 'update', 'delete', 'destroy', 'admin'] as const;
/** One per KMS operation (a build job may `encrypt` without `decrypt`), and `key-admin` for the keys themselves. */
export const KMS_CAPABILITIES = ['encrypt', 'decrypt', 'rewrap', 'datakey', 'sign', 'verify', 'hmac', 'key-admin'] as const;
export const CAPABILITIES = [...SECRET_CAPABILITIES, ...KMS_CAPABILITIES] as const;
export type Capability = (typeof CAPABILITIES)[number];

export interface TokenInfo {
  accessor: string;
  identity: string;
  display_name: string;
  policies: string[];
  created_at: string;
  expires_at: string | null;
  /** Renewals never extend the token past this (absent from servers before identities). */
  max_expires_at?: string | null;
  renewable?: boolean;
  metadata?: Record<string, string>;
}

/** The `auth` block every login, renew-self and token create answers with. */
export interface AuthInfo {
  client_token: string;
  accessor: string;
  /** "user:alice", "approle:<role>", "jwt:<role>:<sub>", "token:<...>" */
  identity: string;
  display_name: string;
  policies: string[];
  /** Seconds until expiry; 0 = never expires (root only). */
  lease_duration: number;
  expires_at: string | null;
  renewable: boolean;
  /** Renewals never extend the token past this. */
  max_expires_at: string | null;
  metadata?: Record<string, string>;
}

/** What a login (or token create/renew) answers, Vault-shaped. */
export interface AuthResponse {
  auth: AuthInfo;
}

/** Body of POST /v1/auth/token/create. */
export interface TokenCreateOptions {
  policies: string[];
  /** Seconds. */
  ttl?: number;
  /** Seconds; renewals never extend the token past creation + max_ttl. */
  max_ttl?: number;
  display_name?: string;
  renewable?: boolean;
  metadata?: Record<string, string>;
}

/** One rule of a policy document (PUT /v1/sys/policies/{name}). */
export interface PolicyRule {
  namespace: string;
  path: string;
  capabilities: string[];
  effect?: 'allow' | 'deny';
}

export interface Policy {
  name?: string;
  rules: PolicyRule[];
}

/** Body of PUT /v1/auth/userpass/users/{name}. */
export interface UserOptions {
  password?: string;
  policies?: string[];
  groups?: string[];
}

/** Body of PUT /v1/auth/approle/roles/{name}. */
export interface ApproleOptions {
  policies: string[];
  token_ttl?: number;
  token_max_ttl?: number;
  secret_id_ttl?: number;
  secret_id_num_uses?: number;
  bound_cidrs?: string[];
}

export interface SecretIdResult {
  secret_id: string;
  accessor: string;
  expires_at: string | null;
}

/** Body of PUT /v1/auth/jwt/issuers/{name}. */
export interface JwtIssuer {
  issuer: string;
  discovery_url?: string;
  jwks_url?: string;
  public_keys?: string[];
}

/** Body of PUT /v1/auth/jwt/roles/{name}. */
export interface JwtRole {
  issuer: string;
  bound_audiences: string[];
  bound_claims?: Record<string, string | string[]>;
  user_claim?: string;
  claim_mappings?: Record<string, string>;
  policies: string[];
  token_ttl?: number;
  token_max_ttl?: number;
}
