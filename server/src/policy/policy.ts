/**
 * Authorization decisions: pure functions, no I/O. Deny by default.
 *
 * Only the root policy exists so far; path policies (namespace glob + path
 * glob + capabilities, explicit deny) arrive with identities and plug in here
 * without the callers changing.
 */
export const CAPABILITIES = ['read', 'list', 'create', 'update', 'delete', 'destroy', 'admin'] as const;
export type Capability = (typeof CAPABILITIES)[number];

/** Who is calling, as established by a verified token. */
export interface Principal {
  accessor: string;
  identity: string;
  displayName: string;
  policies: readonly string[];
  /** When the token expires (ms since the epoch); undefined for tokens that do not expire. */
  expiresAt?: number | undefined;
}

export const ROOT_POLICY = 'root';

/** May `principal` do `capability` on `namespace:path`? (`path` '' is the namespace itself.) */
export function isAllowed(principal: Principal, capability: Capability, namespace: string, path: string): boolean {
  void capability;
  void namespace;
  void path;
  return principal.policies.includes(ROOT_POLICY);
}

/** May `principal` administer the server (seal, namespaces)? */
export function isAdmin(principal: Principal): boolean {
  return principal.policies.includes(ROOT_POLICY);
}
