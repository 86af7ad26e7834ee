/**
 * How the domain services announce a change: published inside the writing
 * transaction for other servers, applied to this server's read cache after
 * the commit (so a reader here sees its own write at once).
 */
import type { Kysely, Transaction } from 'kysely';
import { publishEvent, type ChangeEventOf } from '../cluster/events.js';
import type { ChangeFeed } from '../storage/change-feed.js';
import type { Database } from '../storage/schema.js';
import { applyChange, type SecretReadCache } from './read-cache.js';

/** The events a secret or namespace change announces (cluster/events.ts constructs them). */
export type SecretChange = ChangeEventOf<'secret' | 'namespace' | 'namespace-keys'>;

export interface Changes {
  cache: SecretReadCache;
  feed: ChangeFeed;
  /** The KMS key cache (kms/named-keys/key-cache.ts): namespace events drop its keys too. */
  kmsKeys?: { apply(event: SecretChange): void };
}

export async function publishChange(changes: Changes, trx: Kysely<Database> | Transaction<Database>, event: SecretChange): Promise<void> {
  await publishEvent(changes.feed, trx, event);
}

export function applyLocally(changes: Changes, event: SecretChange): void {
  applyChange(changes.cache, event);
  changes.kmsKeys?.apply(event);
}
