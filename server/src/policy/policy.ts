/**
 * Authorization decisions: pure functions, no I/O. Deny by default; an
 * explicit deny wins over any allow.
 *
 * A policy is a list of rules `namespace glob + path glob + capabilities`,
 * each allowing or denying. A principal names its policies; the compiled
 * documents are looked up through `principal.grants`, which the server keeps
 * current as policies change (so an edit takes effect on the next request,
 * without new tokens).
 */
import { CAPABILITIES, type Capability } from '@coffer/sdk/api';

export { CAPABILITIES, type Capability };

export const ROOT_POLICY = 'root';

export interface PolicyRule {
  /** Glob over namespace names: `*` any run of characters, `?` one character. */
  namespace: string;
  /** Glob over secret paths: `*` any run of characters (`/` included), `?` one; '' is the namespace itself. */
  path: string;
  capabilities: Capability[];
  effect: 'allow' | 'deny';
}

export interface PolicyDocument {
  rules: PolicyRule[];
}

interface CompiledRule {
  namespace: Matcher;
  path: Matcher;
  /** Bit per capability. */
  capabilities: number;
  deny: boolean;
  /** The namespace glob is exactly `*`: the rule speaks for the whole server (see isAdmin). */
  everyNamespace: boolean;
}

export interface CompiledPolicy {
  readonly name: string;
  readonly rules: readonly CompiledRule[];
}

/** Where a principal's policy names are resolved; kept current by the server. */
export interface PolicyLookup {
  get(name: string): CompiledPolicy | undefined;
}

/** Who is calling, as established by a verified token. */
export interface Principal {
  accessor: string;
  identity: string;
  displayName: string;
  policies: readonly string[];
  /** When the token expires (ms since the epoch); undefined for tokens that do not expire. */
  expiresAt?: number | undefined;
  /** Resolves `policies`; without it only the root policy means anything. */
  grants?: PolicyLookup | undefined;
}

type Matcher = (value: string) => boolean;

const bit = (c: Capability): number => 1 << CAPABILITIES.indexOf(c);
const ALL = CAPABILITIES.reduce((m, c) => m | bit(c), 0);

export function compilePolicy(name: string, doc: PolicyDocument): CompiledPolicy {
  return {
    name,
    rules: doc.rules.map((r) => ({
      namespace: globMatcher(r.namespace),
      path: globMatcher(r.path),
      capabilities: r.capabilities.reduce((m, c) => m | bit(c), 0),
      deny: r.effect === 'deny',
      everyNamespace: r.namespace === '*',
    })),
  };
}

/** `*` → any run of characters, `?` → one character; everything else literal. Exact strings skip the regex. */
export function globMatcher(glob: string): Matcher {
  if (glob === '*') return () => true;
  if (!/[*?]/.test(glob)) return (v) => v === glob;
  const source = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  const re = new RegExp(`^${source}$`, 's');
  return (v) => re.test(v);
}

/** May `principal` do `capability` on `namespace:path`? (`path` '' is the namespace itself.) */
export function isAllowed(principal: Principal, capability: Capability, namespace: string, path: string): boolean {
  if (principal.policies.includes(ROOT_POLICY)) return true;
  return (capabilitiesOf(principal, namespace, path) & bit(capability)) !== 0;
}

/** Every capability `principal` holds on `namespace:path`, after denies. */
export function capabilitiesOn(principal: Principal, namespace: string, path: string): Capability[] {
  if (principal.policies.includes(ROOT_POLICY)) return [...CAPABILITIES];
  const mask = capabilitiesOf(principal, namespace, path);
  return CAPABILITIES.filter((c) => (mask & bit(c)) !== 0);
}

function capabilitiesOf(principal: Principal, namespace: string, path: string): number {
  const grants = principal.grants;
  if (!grants) return 0;
  let allow = 0;
  let deny = 0;
  for (const name of principal.policies) {
    const policy = grants.get(name);
    if (!policy) continue;
    for (const rule of policy.rules) {
      if (!rule.namespace(namespace) || !rule.path(path)) continue;
      if (rule.deny) deny |= rule.capabilities;
      else allow |= rule.capabilities;
    }
  }
  return allow & ~deny & ALL;
}

/**
 * May `principal` administer the whole server (seal, policies, identities,
 * root rotation)? Root, or a policy allowing `admin` on every namespace
 * (namespace glob `*`), with no deny of `admin` on every namespace.
 */
export function isAdmin(principal: Principal): boolean {
  if (principal.policies.includes(ROOT_POLICY)) return true;
  const grants = principal.grants;
  if (!grants) return false;
  const admin = bit('admin');
  let allowed = false;
  for (const name of principal.policies) {
    const policy = grants.get(name);
    if (!policy) continue;
    for (const rule of policy.rules) {
      if (!rule.everyNamespace || (rule.capabilities & admin) === 0) continue;
      if (rule.deny) return false;
      allowed = true;
    }
  }
  return allowed;
}

/** Can `principal` hand out every one of `policies` (to a child token, user or role)? Root can; others only their own. */
export function canDelegate(principal: Principal, policies: readonly string[]): boolean {
  if (principal.policies.includes(ROOT_POLICY)) return true;
  return policies.every((p) => p !== ROOT_POLICY && principal.policies.includes(p));
}
