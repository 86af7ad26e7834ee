/**
 * The key management service for applications: named keys per namespace
 * (keys.ts: administration) and what applications do with them
 * (operations.ts). Both share one KeyStore (key-store.ts). Built once per
 * unseal in app/compose.ts; routes are declared on these two objects.
 */
import type { KmsKeyCache } from './key-cache.js';
import type { KeyStoreDeps } from './key-store.js';
import { KeyOperations } from './operations.js';
import { NamedKeys, type Transactor } from './keys.js';

export { KeyOperations } from './operations.js';
export { NamedKeys } from './keys.js';
export { KmsKeyCache } from './key-cache.js';

export interface Kms {
  keys: NamedKeys;
  ops: KeyOperations;
  /** Rows and unwrapped versions of recently used keys (key-cache.ts); the change feed invalidates it. */
  cache: KmsKeyCache;
}

export function createKms(db: Transactor, deps: KeyStoreDeps): Kms {
  const keys = new NamedKeys(db, deps);
  return { keys, ops: new KeyOperations(keys.store, deps.cache), cache: deps.cache };
}
