/**
 * Which capability each KMS action needs. KMS capabilities are matched like
 * any other: a rule's namespace glob against the namespace, its path glob
 * against the key name. They are disjoint from the secret capabilities, so a
 * rule written for secrets grants nothing on keys and the reverse: a build job
 * can hold `encrypt` on a key without `decrypt`, and `read` on secrets gives
 * no key operation. Random bytes involve no key: any valid token may ask for them.
 */
import { KMS_CAPABILITIES, type Capability } from '@coffer/sdk/api';
import { capabilitiesOn, isAllowed, type Principal } from './policy.js';

export type KmsCapability = (typeof KMS_CAPABILITIES)[number];

export const KMS_ACTIONS = {
  // Administration of the keys themselves.
  'key.create': 'key-admin',
  'key.config': 'key-admin',
  'key.rotate': 'key-admin',
  'key.trim': 'key-admin',
  'key.delete': 'key-admin',
  // One capability per operation; a batch needs the capability of its operation.
  encrypt: 'encrypt',
  decrypt: 'decrypt',
  rewrap: 'rewrap',
  datakey: 'datakey',
  sign: 'sign',
  verify: 'verify',
  hmac: 'hmac',
  // Checking an HMAC is verifying, as in Vault's transit: `verify` covers signatures and MACs.
  'hmac.verify': 'verify',
} as const satisfies Record<string, KmsCapability>;

export type KmsAction = keyof typeof KMS_ACTIONS;

export function kmsCapabilityFor(action: KmsAction): KmsCapability {
  return KMS_ACTIONS[action];
}

/** May `principal` do `action` with key `key` of `namespace`? */
export function mayUseKey(principal: Principal, action: KmsAction, namespace: string, key: string): boolean {
  return isAllowed(principal, KMS_ACTIONS[action], namespace, key);
}

const KMS_SET: ReadonlySet<Capability> = new Set(KMS_CAPABILITIES);

/**
 * May `principal` see a key (its configuration, versions and public keys, and
 * its name in a listing)? Any KMS capability on it: whoever may verify may read
 * the public key, and no one learns of a key they can do nothing with.
 */
export function maySeeKey(principal: Principal, namespace: string, key: string): boolean {
  return capabilitiesOn(principal, namespace, key).some((c) => KMS_SET.has(c));
}
