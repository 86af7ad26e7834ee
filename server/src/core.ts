/**
 * The server's state machine: uninitialised → sealed ⇄ unsealed. While sealed
 * no key is in memory and every data endpoint answers 503. Unsealing rebuilds
 * the keyring from the root key; sealing zeroes it.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { CofferError, conflict, sealedError } from './errors.js';
import { generateKeyMaterial, openWithKey, sealWithKey, zeroize, type KeyMaterial } from './keyring/aead.js';
import { aad } from './keyring/context.js';
import { Keyring } from './keyring/keyring.js';
import { InMemoryRootKey } from './seal/root-key.js';
import { ShareCollector, decodeShare, encodeShare, splitRootKey, validateShareConfig } from './seal/shamir.js';
import { NamespaceService } from './secrets/namespace-service.js';
import { SecretService } from './secrets/secret-service.js';
import type { Database } from './storage/schema.js';
import type { ChangeFeed } from './storage/change-feed.js';
import { SecretReadCache, applyChange, parseChange } from './secrets/read-cache.js';
import type { AuditLog } from './audit/audit-log.js';
import { KekLifecycle } from './secrets/kek-lifecycle.js';
import { KekUsage } from './keyring/usage.js';

const AUDIT_KEY = 'audit';
import { isUniqueViolation } from './storage/errors.js';
import { TOKEN_SIGNING_KEY, TokenService, newAccessor, rootTokenClaims, signToken } from './auth/tokens.js';
import type { AuthOptions } from './config.js';
import { PolicyStore } from './auth/policy-store.js';
import { LoginGuard } from './auth/login-guard.js';
import { UserpassService } from './auth/userpass.js';
import { AppRoleService } from './auth/approle.js';
import { JwtAuthService } from './auth/jwt.js';
import { CertAuthService } from './auth/cert.js';

const ROOT_CHECK_PLAINTEXT = new TextEncoder().encode('coffer root key check v1');

export interface CoreOptions {
  /** KEK lifecycle: usage counting, rewrap batches, the background runner. */
  kek: {
    rotateAfterEncryptions: number;
    usageReserveBlock: number;
    rewrapBatchSize: number;
    rewrapBatchDelayMs: number;
    jobIntervalMs: number;
    /** False: no background runner (tests drive `services().kek` by hand). */
    runJobs: boolean;
  };
  /** Background failures and events (the KEK lifecycle runner); never given key material. */
  log?: {
    error(what: string, err: unknown): void;
    event(what: string, fields: Record<string, unknown>): void;
  };
  kekCacheTtlMs: number;
  kekCacheMaxEntries: number;
  secretCacheMaxEntries: number;
  secretCacheTtlMs: number;
  defaultMaxVersions: number;
  auth: AuthOptions;
}

export interface SealStatus {
  initialized: boolean;
  sealed: boolean;
  seal_type: string | null;
  shares: number | null;
  threshold: number | null;
  /** Shares accepted so far towards the threshold. */
  progress: number;
}

export interface InitResult {
  shares: string[];
  threshold: number;
  root_token: string;
}

interface SealConfig {
  sealType: string;
  shares: number;
  threshold: number;
  rootVersion: number;
  rootCheck: Uint8Array;
}

/** What exists only while unsealed. */
export interface Services {
  keyring: Keyring;
  tokens: TokenService;
  namespaces: NamespaceService;
  secrets: SecretService;
  policies: PolicyStore;
  userpass: UserpassService;
  approle: AppRoleService;
  jwt: JwtAuthService;
  cert: CertAuthService;
  kek: KekLifecycle;
}

export class CofferCore {
  private sealConfig: SealConfig | null = null;
  private collector: ShareCollector | null = null;
  private rootCollector: ShareCollector | null = null;
  private unsealed: Services | null = null;
  /** Serialises init/unseal/seal so two operators cannot interleave them. */
  private transition: Promise<unknown> = Promise.resolve();

  /** Lives across seal/unseal; emptied on both, and kept in step with other servers by the change feed. */
  readonly readCache: SecretReadCache;

  constructor(
    readonly db: Kysely<Database>,
    private readonly changes: ChangeFeed,
    readonly audit: AuditLog,
    private readonly options: CoreOptions,
  ) {
    this.readCache = new SecretReadCache(options.secretCacheMaxEntries, options.secretCacheTtlMs);
    this.readCache.reset(changes.up);
    changes.events.on('change', (payload: string) => {
      const event = parseChange(payload);
      if (event?.kind === 'namespace-keys') this.unsealed?.keyring.evictNamespace(event.namespaceId);
      else if (event) applyChange(this.readCache, event);
      else this.applyAuthChange(payload);
    });
    changes.events.on('up', () => {
      this.readCache.reset(true);
      // Changes may have been missed while the feed was down.
      void this.unsealed?.policies.loadAll().catch(() => undefined);
      void this.unsealed?.tokens.load().catch(() => undefined);
    });
    changes.events.on('down', () => this.readCache.reset(false));
  }

  /** Reads the seal configuration; the server starts sealed. */
  async load(): Promise<void> {
    const row = await this.db.selectFrom('seal_config').selectAll().where('id', '=', 1).executeTakeFirst();
    this.sealConfig = row
      ? {
          sealType: row.seal_type,
          shares: row.shares,
          threshold: row.threshold,
          rootVersion: row.root_version,
          rootCheck: row.root_check,
        }
      : null;
  }

  get isSealed(): boolean {
    return this.unsealed === null;
  }

  status(): SealStatus {
    const c = this.sealConfig;
    return {
      initialized: c !== null,
      sealed: this.unsealed === null,
      seal_type: c?.sealType ?? null,
      shares: c?.shares ?? null,
      threshold: c?.threshold ?? null,
      progress: this.collector?.progress ?? 0,
    };
  }

  /** The unsealed services, or 503 sealed. */
  services(): Services {
    if (!this.unsealed) throw sealedError();
    return this.unsealed;
  }

  /**
   * Generates the root key, splits it into shares, creates the system keys and
   * the initial root token. Returns the shares and the token once; they are
   * stored nowhere. The server stays sealed afterwards, as Vault does.
   */
  init(
    shares: number,
    threshold: number,
    /** Runs inside the init transaction just before commit (the audit entry): if it throws, nothing is initialised. */
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<InitResult> {
    return this.exclusive(async () => {
      const problem = validateShareConfig(shares, threshold);
      if (problem) throw new CofferError(400, 'invalid_request', problem);
      await this.load();
      if (this.sealConfig) throw conflict('already_initialized', 'Coffer is already initialised');

      const rootVersion = 1;
      const rootKeyBytes = generateKeyMaterial();
      const root = new InMemoryRootKey(Uint8Array.from(rootKeyBytes), rootVersion);
      const signingKey = generateKeyMaterial();
      try {
        // Shares are computed before anything is stored: a failure here leaves the server uninitialised.
        const shareBytes = await splitRootKey(rootKeyBytes, shares, threshold);
        const rootCheck = sealWithKey(rootKeyBytes, ROOT_CHECK_PLAINTEXT, aad.rootCheck(rootVersion));
        const wrappedSigningKey = await root.wrapKey(signingKey, aad.systemKey(TOKEN_SIGNING_KEY, 1, rootVersion));
        const accessor = newAccessor();
        const rootToken = signToken(signingKey, rootTokenClaims(accessor));
        try {
          await this.db.transaction().execute(async (trx) => {
            await trx
              .insertInto('seal_config')
              .values({ id: 1, seal_type: 'shamir', shares, threshold, root_version: rootVersion, root_check: rootCheck })
              .execute();
            await trx
              .insertInto('system_keys')
              .values({ name: TOKEN_SIGNING_KEY, version: 1, wrapped_key: wrappedSigningKey, root_version: rootVersion })
              .execute();
            await trx
              .insertInto('tokens')
              .values({ accessor, identity: 'root', display_name: 'root', policies: JSON.stringify(['root']) })
              .execute();
            await beforeCommit?.(trx);
          });
        } catch (err) {
          zeroize(...shareBytes);
          if (isUniqueViolation(err)) throw conflict('already_initialized', 'Coffer is already initialised');
          throw err;
        }
        await this.load();
        const encoded = shareBytes.map(encodeShare);
        zeroize(...shareBytes);
        return { shares: encoded, threshold, root_token: rootToken };
      } finally {
        zeroize(rootKeyBytes, signingKey);
        root.destroy();
      }
    });
  }

  /**
   * Accepts one share. When the threshold is met the root key is rebuilt and
   * checked against the stored check value; a wrong share is detected there,
   * progress resets, and nothing is unsealed.
   */
  unseal(shareText: string): Promise<SealStatus> {
    return this.exclusive(async () => {
      if (!this.sealConfig) await this.load();
      const config = this.sealConfig;
      if (!config) throw new CofferError(400, 'not_initialized', 'Coffer is not initialised yet (POST /v1/sys/init)');
      if (this.unsealed) return this.status();
      const share = decodeShare(shareText, config.threshold);
      this.collector ??= new ShareCollector(config.threshold);
      let candidate: KeyMaterial | null;
      try {
        candidate = await this.collector.add(share);
      } catch (err) {
        this.collector = null;
        throw err;
      }
      if (!candidate) return this.status();
      this.collector = null;
      try {
        openWithKey(candidate, config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check');
      } catch {
        zeroize(candidate);
        throw new CofferError(
          400,
          'invalid_shares',
          'the shares do not reconstruct this server\'s root key (a share is wrong or belongs to another Coffer); unseal progress was reset',
        );
      }
      await this.openServices(new InMemoryRootKey(candidate, config.rootVersion));
      return this.status();
    });
  }

  /** Zeroes every key in memory; data endpoints answer 503 until the next unseal. */
  seal(): Promise<SealStatus> {
    return this.exclusive(async () => {
      // Sign the chain's head while the key is still here.
      await this.audit.checkpointNow().catch(() => undefined);
      await this.unsealed?.kek.stop();
      this.dropKeys();
      return this.status();
    });
  }

  /**
   * Regenerates a root token from the operators' shares (the old one may have
   * been revoked or lost). Shares are collected like an unseal; when the
   * threshold is met and they rebuild this server's root key, a new root token
   * is issued to the request that supplied the last share.
   */
  generateRoot(shareText: string | null): Promise<{ progress: number; threshold: number; complete: boolean; root_token?: string }> {
    return this.exclusive(async () => {
      const services = this.services();
      const config = this.sealConfig;
      if (!config) throw new CofferError(400, 'not_initialized', 'Coffer is not initialised yet (POST /v1/sys/init)');
      if (shareText === null) {
        this.rootCollector?.reset();
        this.rootCollector = null;
        return { progress: 0, threshold: config.threshold, complete: false };
      }
      const share = decodeShare(shareText, config.threshold);
      this.rootCollector ??= new ShareCollector(config.threshold);
      let candidate: KeyMaterial | null;
      try {
        candidate = await this.rootCollector.add(share);
      } catch (err) {
        this.rootCollector = null;
        throw err;
      }
      if (!candidate) return { progress: this.rootCollector.progress, threshold: config.threshold, complete: false };
      this.rootCollector = null;
      try {
        openWithKey(candidate, config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check');
      } catch {
        throw new CofferError(400, 'invalid_shares', 'the shares do not reconstruct this server\'s root key; progress was reset');
      } finally {
        zeroize(candidate);
      }
      const issued = await services.tokens.issueRoot();
      return { progress: config.threshold, threshold: config.threshold, complete: true, root_token: issued };
    });
  }

  /** Abandons a partial unseal. */
  resetUnseal(): Promise<SealStatus> {
    return this.exclusive(async () => {
      this.collector?.reset();
      this.collector = null;
      return this.status();
    });
  }

  /** Flushes and checkpoints the audit log, then zeroes every key. */
  async close(): Promise<void> {
    await this.unsealed?.kek.stop();
    await this.audit.close();
    this.dropKeys();
  }

  /** Policy and token changes made by any server (this one included). */
  private applyAuthChange(payload: string): void {
    const services = this.unsealed;
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

  private dropKeys(): void {
    this.audit.setKey(null);
    this.readCache.reset(this.changes.up);
    this.collector?.reset();
    this.collector = null;
    this.rootCollector?.reset();
    this.rootCollector = null;
    if (this.unsealed) {
      void this.unsealed.kek.stop();
      this.unsealed.keyring.destroy();
      this.unsealed.tokens.destroy();
      this.unsealed.policies.clear();
      this.unsealed = null;
    }
  }

  private async openServices(root: InMemoryRootKey): Promise<void> {
    const keyring = new Keyring(this.db, root, {
      ttlMs: this.options.kekCacheTtlMs,
      maxEntries: this.options.kekCacheMaxEntries,
    });
    try {
      const row = await this.db
        .selectFrom('system_keys')
        .selectAll()
        .where('name', '=', TOKEN_SIGNING_KEY)
        .orderBy('version', 'desc')
        .executeTakeFirstOrThrow();
      const signingKey = await keyring.unwrapSystemKey(row.name, row.version, row.wrapped_key, row.root_version);
      const policies = new PolicyStore(this.db, this.changes);
      await policies.loadAll();
      const auth = this.options.auth;
      const tokens = new TokenService(this.db, signingKey, this.changes, policies, auth.tokens);
      this.audit.setKey(await this.systemKey(keyring, AUDIT_KEY));
      await tokens.load();
      const changes = { cache: this.readCache, feed: this.changes };
      const namespaces = new NamespaceService(this.db, keyring, changes);
      const k = this.options.kek;
      const usage = new KekUsage(k.usageReserveBlock, k.rotateAfterEncryptions);
      const secrets = new SecretService(this.db, keyring, namespaces, changes, this.options.defaultMaxVersions, usage);
      const log = this.options.log;
      const kek = new KekLifecycle(this.db, keyring, namespaces, changes, usage, {
        rewrapBatchSize: k.rewrapBatchSize,
        rewrapBatchDelayMs: k.rewrapBatchDelayMs,
        jobIntervalMs: k.jobIntervalMs,
        onError: (what, err) => log?.error(what, err),
        onEvent: (what, fields) => log?.event(what, fields),
        audit: (event) =>
          this.audit.append({
            request_id: randomUUID(),
            identity: { id: 'system:kek-lifecycle', method: 'none', display_name: 'KEK lifecycle job' },
            action: event.action,
            namespace: event.namespace,
            path: null,
            version: event.kekVersion,
            outcome: 'success',
            status: 200,
            error_code: null,
            client: null,
            hashed: {},
          }),
      });
      if (k.runJobs) {
        namespaces.onKekRotated = () => kek.kick();
        secrets.onUsageLimit = () => kek.kick();
      }
      const guard = new LoginGuard(auth.guard);
      this.unsealed = {
        keyring,
        tokens,
        namespaces,
        secrets,
        policies,
        userpass: new UserpassService(this.db, tokens, guard, auth.argon2),
        approle: new AppRoleService(this.db, tokens, guard),
        jwt: new JwtAuthService(this.db, tokens, guard, auth.jwt),
        cert: new CertAuthService(this.db, tokens, guard),
        kek,
      };
      if (k.runJobs) kek.start();
    } catch (err) {
      keyring.destroy();
      throw err;
    }
  }

  /**
   * Unwraps a system key, creating it on first use (servers initialised before
   * the key existed get it at their next unseal; concurrent servers converge on
   * whichever row was inserted first).
   */
  private async systemKey(keyring: Keyring, name: string): Promise<KeyMaterial> {
    const load = () =>
      this.db.selectFrom('system_keys').selectAll().where('name', '=', name).orderBy('version', 'desc').executeTakeFirst();
    let row = await load();
    if (!row) {
      const fresh = generateKeyMaterial();
      try {
        const wrapped = await keyring.wrapSystemKey(name, 1, fresh);
        await this.db
          .insertInto('system_keys')
          .values({ name, version: 1, wrapped_key: wrapped, root_version: keyring.rootVersion })
          .onConflict((oc) => oc.columns(['name', 'version']).doNothing())
          .execute();
      } finally {
        zeroize(fresh);
      }
      row = await load();
      if (!row) throw new Error(`system key ${name} could not be created`);
    }
    return keyring.unwrapSystemKey(row.name, row.version, row.wrapped_key, row.root_version);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.transition.then(fn, fn);
    this.transition = run.catch(() => undefined);
    return run;
  }
}
