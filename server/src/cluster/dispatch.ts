/**
 * The change feed between servers sharing one database: what this server does
 * when another one (or itself) announces a change. Secret and namespace
 * changes keep the read cache and the KEK cache in step; policy and token
 * changes reload those; a new root key version makes the vault follow it. A
 * feed that was down may have missed changes: on 'up' the caches restart empty
 * and policies and tokens are reloaded. An init elsewhere makes a server that
 * started uninitialised read the seal configuration (and auto-unseal if it can).
 */
import type { PolicyStore } from '../auth/policy-store.js';
import type { TokenService } from '../auth/tokens.js';
import type { Keyring } from '../keyring/keyring.js';
import { applyChange, type SecretReadCache } from '../secrets/read-cache.js';
import type { ChangeFeed } from '../storage/change-feed.js';
import { handleChange, parseChangeEvent, type ChangeHandlers } from './events.js';

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
  /** Reads the seal configuration again if this server has not seen an init yet (vault/follow-root.ts). */
  followInit(): Promise<void>;
  /** Background failures (never given key material). */
  onError(what: string, err: unknown): void;
  /**
   * A notification that is not an event this server understands: `unknown-kind` (a newer
   * server's, during a rolling upgrade) or `malformed`. Told the kind at most, never the payload.
   */
  onIgnored?(problem: 'malformed' | 'unknown-kind', kind: string | undefined): void;
}

/** What each kind of event does on this server. */
export function changeHandlers(to: Dispatch): ChangeHandlers {
  const { readCache } = to;
  return {
    secret: (event) => applyChange(readCache, event),
    namespace: (event) => applyChange(readCache, event),
    'namespace-keys': (event) => to.unsealed()?.keyring.evictNamespace(event.namespaceId),
    // Reload failures are left to the next change or the feed's 'up' (which reloads everything).
    policy: (event) => void to.unsealed()?.policies.reload(event.name).catch(() => undefined),
    tokens: () => void to.unsealed()?.tokens.load().catch(() => undefined),
    // A database outage here must not become an unhandled rejection (the next KEK unwrap follows again).
    root: () => void to.followRoot().catch((err: unknown) => to.onError('following a root key change failed', err)),
    init: () => void to.followInit().catch((err: unknown) => to.onError('following an init failed', err)),
  };
}

export function dispatchChanges(changes: ChangeFeed, to: Dispatch): void {
  const { readCache } = to;
  const handlers = changeHandlers(to);
  readCache.reset(changes.up);
  changes.events.on('change', (payload: string) => {
    const parsed = parseChangeEvent(payload);
    if (!parsed.ok) {
      to.onIgnored?.(parsed.problem, parsed.kind?.slice(0, 64));
      return;
    }
    try {
      handleChange(handlers, parsed.event);
    } catch (err) {
      // Thrown back into the LISTEN connection's notification handler, it would end the process.
      to.onError(`handling a ${parsed.event.kind} change failed`, err);
    }
  });
  changes.events.on('up', () => {
    readCache.reset(true);
    // Changes may have been missed while the feed was down.
    void to.unsealed()?.policies.loadAll().catch(() => undefined);
    void to.unsealed()?.tokens.load().catch(() => undefined);
    // An init may have been among them (status endpoints also look again while uninitialised).
    void to.followInit().catch(() => undefined);
  });
  changes.events.on('down', () => readCache.reset(false));
}
