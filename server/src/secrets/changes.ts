/**
 * How the domain services announce a change: published inside the writing
 * transaction for other servers, applied to this server's read cache after
 * the commit (so a reader here sees its own write at once).
 */
import type { Kysely, Transaction } from 'kysely';
import type { ChangeFeed } from '../storage/change-feed.js';
import type { Database } from '../storage/schema.js';
import { applyChange, type ChangeEvent, type SecretReadCache } from './read-cache.js';

export interface Changes {
  cache: SecretReadCache;
  feed: ChangeFeed;
}

export async function publishChange(changes: Changes, trx: Kysely<Database> | Transaction<Database>, event: ChangeEvent): Promise<void> {
  await changes.feed.publish(trx, JSON.stringify(event));
}

export function applyLocally(changes: Changes, event: ChangeEvent): void {
  applyChange(changes.cache, event);
}
