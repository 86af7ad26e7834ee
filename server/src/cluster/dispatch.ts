/**
 * The change feed between servers sharing one database: what this server does
 * when another one (or itself) announces a change. Secret and namespace
 * changes keep the read cache and the KEK cache in step; policy and token
 * changes reload those; a new root key version makes the vault follow it. A
 * feed that was down may have missed changes: on 'up' the caches restart empty
 * and policies and tokens are reloaded.
 */
import type { Transaction } from 'kysely';
import type { PolicyStore } from '../auth/policy-store.js';
import type { TokenService } from '../auth/tokens.js';
import type { Keyring } from '../keyring/keyring.js';
import { applyChange, parseChange, type SecretReadCache } from '../secrets/read-cache.js';
import type { ChangeFeed } from '../storage/change-feed.js';
import type { Database } from '../storage/schema.js';

/** What the dispatch reaches while the server is unsealed. */
export interface ChangeTargets {
  keyring: Pick<Keyring, 'evictNamespace'>;
  policies: Pick<PolicyStore, 'loadAll' | 'reload'>;
  tokens: Pick<TokenService, 'load'>;
}

export interface Dispatch {
  readCache: SecretReadCache;
  /** The unsealed services, or null while sealed. */
  unsealed(): ChangeTargets | null;
  /** Follows a root key version another server put in effect (vault/follow-root.ts). */
  followRoot(): Promise<void>;
  /** Background failures (never given key material). */
  onError(what: string, err: unknown): void;
}

/** Announces a new root key version, inside the transaction that put it in effect. */
export function publishRootChange(feed: Pick<ChangeFeed, 'publish'>, trx: Transaction<Database>, version: number): Promise<void> {
  return feed.publish(trx, JSON.stringify({ kind: 'root', version }));
}

/** A change-feed payload announcing a new root key version. */
function isRootChange(payload: string): boolean {
  try {
    return (JSON.parse(payload) as { kind?: unknown }).kind === 'root';
  } catch {
    return false;
  }
}

export function dispatchChanges(changes: ChangeFeed, to: Dispatch): void {
  const { readCache } = to;
  readCache.reset(changes.up);
  changes.events.on('change', (payload: string) => {
    const event = parseChange(payload);
    if (event?.kind === 'namespace-keys') to.unsealed()?.keyring.evictNamespace(event.namespaceId);
    else if (event) applyChange(readCache, event);
    // A database outage here must not become an unhandled rejection (the next KEK unwrap follows again).
    else if (isRootChange(payload)) void to.followRoot().catch((err: unknown) => to.onError('following a root key change failed', err));
    else applyAuthChange(to.unsealed(), payload);
  });
  changes.events.on('up', () => {
    readCache.reset(true);
    // Changes may have been missed while the feed was down.
    void to.unsealed()?.policies.loadAll().catch(() => undefined);
    void to.unsealed()?.tokens.load().catch(() => undefined);
  });
  changes.events.on('down', () => readCache.reset(false));
}

/** Policy and token changes made by any server (this one included). */
function applyAuthChange(services: ChangeTargets | null, payload: string): void {
  if (!services) return;
  let event: { kind?: unknown; name?: unknown };
  try {
    event = JSON.parse(payload) as typeof event;
  } catch {
    return;
  }
  if (event.kind === 'policy' && typeof event.name === 'string') void services.policies.reload(event.name).catch(() => undefined);
  else if (event.kind === 'tokens') void services.tokens.load().catch(() => undefined);
}
