/**
 * The server's state machine: uninitialised → sealed ⇄ unsealed. While sealed
 * no key is in memory and every data endpoint answers 503. Unsealing rebuilds
 * the keyring from the root key; sealing zeroes it.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { GenerateRootProgress, InitResult, RewrapCounts, RotateRootResult, SealMigrateResult, SealStatus } from '@coffer/sdk/api';
import { CofferError, conflict, sealedError } from './errors.js';
import { generateKeyMaterial, openWithKey, sealWithKey, zeroize, type KeyMaterial } from './keyring/aead.js';
import { aad } from './keyring/context.js';
import { Keyring } from './keyring/keyring.js';
import { InMemoryRootKey, type RootKey } from './seal/root-key.js';
import { HsmUnavailableError, Pkcs11Token, type Pkcs11Settings } from './seal/pkcs11.js';
import { Pkcs11RootKey } from './seal/pkcs11-root-key.js';
import { RECOVERY_CHECK_PLAINTEXT, sealAad } from './seal/seal-context.js';
import { rewrapStragglers, rewrapUnderNewRoot } from './seal/rewrap.js';
import { ShareCollector, combineShareTexts, decodeShare, encodeShare, splitRootKey, validateShareConfig } from './seal/shamir.js';
import { NamespaceService } from './secrets/namespace-service.js';
import { SecretService } from './secrets/secret-service.js';
import type { Database } from './storage/schema.js';
import type { ChangeFeed } from './storage/change-feed.js';
import { pingDatabase, type DatabaseCheck } from './storage/db.js';
import { SecretReadCache, applyChange, parseChange } from './secrets/read-cache.js';
import type { AuditLog } from './audit/audit-log.js';
import { KekLifecycle } from './secrets/kek-lifecycle.js';
import { KekUsage } from './keyring/usage.js';

const AUDIT_KEY = 'audit';
import { isUniqueViolation } from './storage/errors.js';
import { TOKEN_SIGNING_KEY, TokenService, newAccessor, rootTokenClaims, signToken, type TokenLimits } from './auth/tokens.js';
import { PolicyStore } from './auth/policy-store.js';
import { LoginGuard, type LoginGuardOptions } from './auth/login-guard.js';
import { UserpassService, type Argon2Params } from './auth/userpass.js';
import { AppRoleService } from './auth/approle.js';
import { JwtAuthService, type JwtOptions } from './auth/jwt.js';
import { CertAuthService } from './auth/cert.js';

/** A change-feed payload announcing a new root key version. */
function isRootChange(payload: string): boolean {
  try {
    return (JSON.parse(payload) as { kind?: unknown }).kind === 'root';
  } catch {
    return false;
  }
}

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
  /** What init creates: Shamir shares, or a root key in a PKCS#11 token. */
  seal?: 'shamir' | 'pkcs11' | undefined;
  /** The PKCS#11 token, when one is configured (also needed to migrate into it). */
  pkcs11?: (Pkcs11Settings & { keyLabel: string }) | null | undefined;
  auth: {
    tokens: TokenLimits;
    guard: LoginGuardOptions;
    argon2: Argon2Params;
    jwt: JwtOptions;
  };
}

interface SealConfig {
  sealType: string;
  shares: number;
  threshold: number;
  rootVersion: number;
  rootCheck: Uint8Array;
  hsmKeyLabel: string | null;
  recoveryCheck: Uint8Array | null;
  rootChain: Uint8Array | null;
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
  /** The PKCS#11 token connection, kept open while it is in use. */
  private token: Pkcs11Token | null = null;
  private sealError: string | null = null;
  /** PKCS#11 seal: sealed through POST /v1/sys/seal; only the recovery shares (or a restart) unseal. */
  private sealedByOperator = false;

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
      // A database outage here must not become an unhandled rejection (the next KEK unwrap follows again).
      else if (isRootChange(payload)) void this.followRoot().catch((err: unknown) => this.options.log?.error('following a root key change failed', err));
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
          hsmKeyLabel: row.hsm_key_label ?? null,
          recoveryCheck: row.recovery_check ?? null,
          rootChain: row.root_chain ?? null,
        }
      : null;
  }

  /** Readiness: whether the database answers `select 1` within `timeoutMs`. */
  pingDatabase(timeoutMs: number): Promise<DatabaseCheck> {
    return pingDatabase(this.db, timeoutMs);
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
      ...(c ? { root_version: c.rootVersion } : {}),
      ...(c?.sealType === 'pkcs11' ? { recovery_seal: true } : {}),
      ...(this.sealError && this.unsealed === null ? { seal_error: this.sealError } : {}),
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
      if (this.options.seal === 'pkcs11') return this.initPkcs11(shares, threshold, beforeCommit);

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
            await insertFirstKeys(trx, wrappedSigningKey, rootVersion, accessor);
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
      if (config.sealType === 'pkcs11') {
        // Recovery shares unseal (with the HSM) a server an operator sealed; otherwise {} retries the HSM.
        if (!this.sealedByOperator || !config.recoveryCheck) {
          throw new CofferError(400, 'invalid_request', 'this server is sealed by its HSM: shares do not unseal it; POST /v1/sys/unseal {} retries the HSM');
        }
        const recovered = await this.addShare('collector', shareText, config.threshold);
        if (!recovered) return this.status();
        try {
          openWithKey(recovered, config.recoveryCheck, sealAad.recoveryCheck(), 'the recovery key check');
        } catch {
          throw new CofferError(400, 'invalid_shares', 'the shares do not reconstruct this server\'s recovery key; unseal progress was reset');
        } finally {
          zeroize(recovered);
        }
        return this.unsealWithHsm(config);
      }
      const candidate = await this.addShare('collector', shareText, config.threshold);
      if (!candidate) return this.status();
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
      // PKCS#11 seal: a deliberate seal is not undone by an anonymous POST /v1/sys/unseal {}.
      this.sealedByOperator = true;
      return this.status();
    });
  }

  /**
   * Adds one operator share to the collection in `slot`. Returns the rebuilt key once the
   * threshold is met (the slot is emptied), else null; a share that fails empties the slot.
   */
  private async addShare(slot: 'collector' | 'rootCollector', shareText: string, threshold: number): Promise<KeyMaterial | null> {
    const share = decodeShare(shareText, threshold);
    const collector = (this[slot] ??= new ShareCollector(threshold));
    try {
      const key = await collector.add(share);
      if (key) this[slot] = null;
      return key;
    } catch (err) {
      this[slot] = null;
      throw err;
    }
  }

  /**
   * Regenerates a root token from the operators' shares (the old one may have
   * been revoked or lost). Shares are collected like an unseal; when the
   * threshold is met and they rebuild this server's root key, a new root token
   * is issued to the request that supplied the last share.
   */
  generateRoot(shareText: string | null): Promise<GenerateRootProgress> {
    return this.exclusive(async () => {
      const services = this.services();
      const config = this.sealConfig;
      if (!config) throw new CofferError(400, 'not_initialized', 'Coffer is not initialised yet (POST /v1/sys/init)');
      if (shareText === null) {
        this.rootCollector?.reset();
        this.rootCollector = null;
        return { progress: 0, threshold: config.threshold, complete: false };
      }
      const candidate = await this.addShare('rootCollector', shareText, config.threshold);
      if (!candidate) return { progress: this.rootCollector?.progress ?? 0, threshold: config.threshold, complete: false };
      try {
        // PKCS#11 seal: the operators hold recovery shares (the root key never leaves the HSM).
        if (config.sealType === 'pkcs11' && config.recoveryCheck) openWithKey(candidate, config.recoveryCheck, sealAad.recoveryCheck(), 'the recovery key check');
        else openWithKey(candidate, config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check');
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
    this.token?.close();
    this.token = null;
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

  private async openServices(root: RootKey): Promise<void> {
    const keyring = new Keyring(this.db, root, {
      ttlMs: this.options.kekCacheTtlMs,
      maxEntries: this.options.kekCacheMaxEntries,
    });
    keyring.onRootBehind = () => this.followRoot();
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

  // ---------------------------------------------------------------------------
  // PKCS#11 seal, root rotation, seal migration
  // ---------------------------------------------------------------------------

  /** The PKCS#11 token, opened on first use; 503 when none is configured or it cannot be reached. */
  private hsm(): Pkcs11Token {
    const settings = this.options.pkcs11;
    if (!settings) {
      throw new CofferError(503, 'unavailable', 'no PKCS#11 token is configured (COFFER_PKCS11_MODULE, COFFER_PKCS11_TOKEN_LABEL, COFFER_PKCS11_PIN_FILE)');
    }
    this.token ??= Pkcs11Token.open(settings);
    return this.token;
  }

  /** The open token for BYOK (null with the Shamir seal). */
  hsmForImports(): Pkcs11Token | null {
    return this.sealConfig?.sealType === 'pkcs11' ? this.hsm() : null;
  }

  get hsmKeyLabelPrefix(): string {
    return this.options.pkcs11?.keyLabel ?? 'coffer-root';
  }

  private rootLabel(version: number): string {
    return `${this.hsmKeyLabelPrefix}-v${version}`;
  }

  /**
   * Init with the PKCS#11 seal: the root key is generated inside the token,
   * and the operators get recovery shares (of a separate recovery key) that
   * authorise seal migration; the HSM unseals. The token is reached before
   * anything is written: unreachable → 503 and the server stays uninitialised.
   */
  private async initPkcs11(
    shares: number,
    threshold: number,
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<InitResult> {
    const token = this.hsm();
    const rootVersion = 1;
    const label = this.rootLabel(rootVersion);
    if (await token.findAesKey(label)) {
      throw conflict(
        'conflict',
        `the token already holds a key labelled "${label}" (another Coffer, or an interrupted init): set another COFFER_PKCS11_KEY_LABEL or delete that object`,
      );
    }
    const handle = await token.generateRootKey(label);
    const root = new Pkcs11RootKey(token, handle, rootVersion, label);
    const recoveryKey = generateKeyMaterial();
    const signingKey = generateKeyMaterial();
    let shareBytes: Uint8Array[] = [];
    try {
      shareBytes = await splitRootKey(recoveryKey, shares, threshold);
      const recoveryCheck = sealWithKey(recoveryKey, RECOVERY_CHECK_PLAINTEXT, sealAad.recoveryCheck());
      const rootCheck = await root.wrapKey(ROOT_CHECK_PLAINTEXT, aad.rootCheck(rootVersion));
      const wrappedSigningKey = await root.wrapKey(signingKey, aad.systemKey(TOKEN_SIGNING_KEY, 1, rootVersion));
      const accessor = newAccessor();
      const rootToken = signToken(signingKey, rootTokenClaims(accessor));
      await this.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('seal_config')
          .values({
            id: 1,
            seal_type: 'pkcs11',
            shares,
            threshold,
            root_version: rootVersion,
            root_check: rootCheck,
            hsm_key_label: label,
            recovery_check: recoveryCheck,
          })
          .execute();
        await insertFirstKeys(trx, wrappedSigningKey, rootVersion, accessor);
        await beforeCommit?.(trx);
      });
      await this.load();
      // Auto-unseal right away: the HSM is here, nobody needs to type a share.
      await this.openServices(root);
      this.sealError = null;
      const encoded = shareBytes.map(encodeShare);
      return { seal_type: 'pkcs11', recovery_shares: encoded, recovery_threshold: threshold, root_token: rootToken };
    } catch (err) {
      // Nothing was committed (or unsealing failed after commit, which load() shows): drop the
      // generated key only if the database does not name it.
      await this.load().catch(() => undefined);
      if (this.sealConfig?.hsmKeyLabel !== label) await token.destroyObject(handle).catch(() => undefined);
      if (isUniqueViolation(err)) throw conflict('already_initialized', 'Coffer is already initialised');
      throw err;
    } finally {
      zeroize(recoveryKey, signingKey, ...shareBytes);
    }
  }

  /**
   * PKCS#11 seal: unseal with the root key in the token, checked against the
   * stored check value. Called at start-up and by POST /v1/sys/unseal. On any
   * failure the server stays sealed, nothing is written, and the reason is in
   * the seal status and the thrown error.
   */
  autoUnseal(): Promise<SealStatus> {
    return this.exclusive(async () => {
      await this.load();
      const config = this.sealConfig;
      if (!config) throw new CofferError(400, 'not_initialized', 'Coffer is not initialised yet (POST /v1/sys/init)');
      if (config.sealType !== 'pkcs11') throw new CofferError(400, 'invalid_request', 'this server uses the Shamir seal: unseal it with shares');
      if (this.unsealed) return this.status();
      if (this.sealedByOperator) {
        throw new CofferError(
          400,
          'invalid_request',
          'an operator sealed this server: unseal it with the recovery shares ({"share": …}, threshold times) or restart it',
        );
      }
      return this.unsealWithHsm(config);
    });
  }

  /** Opens the services with the root key in the token (inside `exclusive`). */
  private async unsealWithHsm(config: SealConfig): Promise<SealStatus> {
    {
      try {
        const token = this.hsm();
        const label = config.hsmKeyLabel ?? this.rootLabel(config.rootVersion);
        const handle = await token.findAesKey(label);
        if (!handle) throw new HsmUnavailableError(`the root key "${label}" is not on the token (wrong token, or the key was deleted)`);
        const root = new Pkcs11RootKey(token, handle, config.rootVersion, label);
        try {
          zeroize(await root.unwrapKey(config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check'));
        } catch (err) {
          if (err instanceof HsmUnavailableError) throw err;
          throw new HsmUnavailableError(`the key "${label}" on the token is not this server's root key`);
        }
        await this.openServices(root);
        this.sealError = null;
        this.sealedByOperator = false;
        await this.retireOldHsmKeys(token, config.rootVersion);
        return this.status();
      } catch (err) {
        this.sealError = err instanceof Error ? err.message : String(err);
        // Reconnect next time: the token may come back (or be reconfigured).
        this.token?.close();
        this.token = null;
        throw err;
      }
    }
  }

  /** Destroys root key objects of versions before the one in effect (left by a crash after a rotation committed). */
  private async retireOldHsmKeys(token: Pkcs11Token, current: number): Promise<void> {
    const prefix = `${this.hsmKeyLabelPrefix}-v`;
    for (const label of await token.listSecretKeyLabels(prefix)) {
      const version = Number(label.slice(prefix.length));
      if (Number.isInteger(version) && version < current) await token.destroyByLabel(label);
    }
  }

  /** Rebuilds a key from operator shares and checks it against `check`; 400 invalid_shares otherwise. */
  private async keyFromShares(shareTexts: string[], threshold: number, check: Uint8Array, checkAad: Uint8Array, plaintext: Uint8Array, what: string): Promise<KeyMaterial> {
    const key = await combineShareTexts(shareTexts, threshold);
    if (!key) throw new CofferError(400, 'invalid_shares', `${threshold} distinct ${what} shares are needed`);
    let opened: Uint8Array;
    try {
      opened = openWithKey(key, check, checkAad, `the ${what} key check`);
    } catch {
      zeroize(key);
      throw new CofferError(400, 'invalid_shares', `the shares do not reconstruct this server's ${what} key`);
    }
    if (Buffer.compare(Buffer.from(opened), Buffer.from(plaintext)) !== 0) {
      zeroize(key);
      throw new CofferError(400, 'invalid_shares', `the shares do not reconstruct this server's ${what} key`);
    }
    return key;
  }

  /**
   * Puts `next` in effect: every wrapped key is rewrapped and seal_config
   * updated in one transaction (a crash leaves the old root or the new one,
   * fully). Then the running keyring switches, stragglers are caught up, and
   * the caller retires the old root.
   */
  private async switchRoot(
    next: RootKey,
    configUpdate: {
      seal_type?: string;
      shares?: number;
      threshold?: number;
      root_check: Uint8Array;
      hsm_key_label: string | null;
      recovery_check?: Uint8Array | null;
      /** `next`'s key bytes wrapped by the current root (software roots), for other servers to follow. */
      root_chain?: Uint8Array | null;
    },
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<{ previous: RootKey; rewrapped: RewrapCounts }> {
    const services = this.services();
    const current = services.keyring.rootKey;
    let rewrapped: RewrapCounts | undefined;
    await this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('seal_config').select('root_version').where('id', '=', 1).forUpdate().executeTakeFirstOrThrow();
      if (row.root_version !== current.version) throw conflict('conflict', 'the root key changed meanwhile (another server rotated it): retry');
      rewrapped = await rewrapUnderNewRoot(trx, current, next);
      // A pending Shamir rekey was wrapped by the old root: it ends here either way.
      await trx
        .updateTable('seal_config')
        .set({ root_chain: null, ...configUpdate, root_version: next.version, pending_root: null, pending_shares: null, pending_threshold: null })
        .where('id', '=', 1)
        .execute();
      // Other servers sharing the database follow the new root (see followRoot).
      await this.changes.publish(trx, JSON.stringify({ kind: 'root', version: next.version }));
      await beforeCommit?.(trx);
    });
    const previous = services.keyring.replaceRoot(next);
    const late = await rewrapStragglers(this.db, previous, next);
    rewrapped!.keks += late.keks;
    rewrapped!.system_keys += late.system_keys;
    await this.load();
    return { previous, rewrapped: rewrapped! };
  }

  /**
   * POST /v1/sys/rotate-root. Shamir: step 1 of a rekey; the threshold of
   * current shares proves the operators agree, and a new root key is split into
   * new shares (returned once) but only put in effect by verifyRotateRoot, so a
   * lost response loses nothing. PKCS#11: a new key object in the token, put in
   * effect at once; the old one is destroyed after the switch committed.
   */
  rotateRoot(
    input: { shares?: string[] | undefined; newShares?: number | undefined; newThreshold?: number | undefined },
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<RotateRootResult> {
    return this.exclusive(async () => {
      this.services();
      const config = this.sealConfig!;
      const version = config.rootVersion + 1;
      if (config.sealType === 'pkcs11') {
        const token = this.hsm();
        const label = this.rootLabel(version);
        // A key under this label can only be left over from an interrupted rotation: not in effect.
        await token.destroyByLabel(label);
        const handle = await token.generateRootKey(label);
        return this.switchToHsmRoot(token, handle, version, label, beforeCommit);
      }
      const shares = input.newShares ?? config.shares;
      const threshold = input.newThreshold ?? (input.newShares === undefined ? config.threshold : Math.min(config.threshold, shares));
      const problem = validateShareConfig(shares, threshold);
      if (problem) throw new CofferError(400, 'invalid_request', problem);
      if (!input.shares || input.shares.length === 0) {
        throw new CofferError(400, 'invalid_shares', `rotating a Shamir root key needs ${config.threshold} of the current shares ("shares": [...])`);
      }
      zeroize(await this.keyFromShares(input.shares, config.threshold, config.rootCheck, aad.rootCheck(config.rootVersion), ROOT_CHECK_PLAINTEXT, 'root'));
      // Step 1 of 2: the next root key is generated and kept wrapped by the current one; nothing
      // else changes. If this response is lost, the old shares still work and this can be repeated.
      const keyBytes = generateKeyMaterial();
      let shareBytes: Uint8Array[] = [];
      try {
        shareBytes = await splitRootKey(keyBytes, shares, threshold);
        const current = this.services().keyring.rootKey;
        const pending = await current.wrapKey(keyBytes, sealAad.pendingRoot(version, current.version));
        await this.db.transaction().execute(async (trx) => {
          await trx
            .updateTable('seal_config')
            .set({ pending_root: pending, pending_shares: shares, pending_threshold: threshold })
            .where('id', '=', 1)
            .where('root_version', '=', current.version)
            .execute();
          await beforeCommit?.(trx);
        });
        return { seal_type: 'shamir', root_version: version, state: 'pending_verification', shares: shareBytes.map(encodeShare), threshold };
      } finally {
        zeroize(keyBytes, ...shareBytes);
      }
    });
  }

  /**
   * Shamir rekey, step 2: the threshold of the NEW shares proves the operators
   * hold them; then the pending root key is put in effect (every key rewrapped
   * in one transaction) and the old one forgotten. A crash before the commit
   * leaves the old root in effect and the rekey still pending (verify again).
   */
  verifyRotateRoot(shareTexts: string[], beforeCommit?: (trx: Transaction<Database>) => Promise<void>): Promise<RotateRootResult> {
    return this.exclusive(async () => {
      const services = this.services();
      const row = await this.db
        .selectFrom('seal_config')
        .select(['pending_root', 'pending_shares', 'pending_threshold', 'root_version'])
        .where('id', '=', 1)
        .executeTakeFirstOrThrow();
      if (!row.pending_root || row.pending_shares === null || row.pending_threshold === null) {
        throw new CofferError(409, 'conflict', 'no root rotation is waiting for verification (POST /v1/sys/rotate-root first)');
      }
      const current = services.keyring.rootKey;
      const version = row.root_version + 1;
      const pendingKey = await current.unwrapKey(row.pending_root, sealAad.pendingRoot(version, current.version), 'the pending root key');
      let candidate: KeyMaterial | null = null;
      try {
        candidate = await combineShareTexts(shareTexts, row.pending_threshold);
        if (!candidate) throw new CofferError(400, 'invalid_shares', `${row.pending_threshold} distinct new shares are needed`);
        if (candidate.length !== pendingKey.length || !timingSafeEqual(candidate, pendingKey)) {
          throw new CofferError(400, 'invalid_shares', 'these are not the new shares of the pending root rotation');
        }
        const next = new InMemoryRootKey(Uint8Array.from(pendingKey), version);
        const rootCheck = sealWithKey(pendingKey, ROOT_CHECK_PLAINTEXT, aad.rootCheck(version));
        const switched = await this.switchRoot(
          next,
          { shares: row.pending_shares, threshold: row.pending_threshold, root_check: rootCheck, hsm_key_label: null, root_chain: row.pending_root },
          beforeCommit,
        ).catch((err: unknown) => {
          next.destroy();
          throw err;
        });
        switched.previous.destroy();
        return { seal_type: 'shamir', root_version: version, state: 'completed', rewrapped: switched.rewrapped, threshold: row.pending_threshold };
      } finally {
        zeroize(pendingKey, candidate);
      }
    });
  }

  private async retireHsmRoot(previous: RootKey): Promise<void> {
    if (previous instanceof Pkcs11RootKey) {
      // After the commit: a crash before this line leaves an unused object that the next unseal removes.
      await this.hsm().destroyByLabel(previous.label).catch(() => undefined);
    } else {
      previous.destroy();
    }
  }

  /**
   * POST /v1/sys/seal-migrate. Shamir → PKCS#11 with the threshold of unseal
   * shares: a root key is generated in the token, everything is rewrapped, and
   * the old root key becomes the recovery key (the same shares, now recovery
   * shares, as in Vault). PKCS#11 → Shamir with the recovery shares: the
   * recovery key becomes the root key (the same shares unseal), and the token
   * object is destroyed.
   */
  migrateSeal(to: 'shamir' | 'pkcs11', shareTexts: string[], beforeCommit?: (trx: Transaction<Database>) => Promise<void>): Promise<SealMigrateResult> {
    return this.exclusive(async () => {
      this.services();
      const config = this.sealConfig!;
      if (config.sealType === to) throw conflict('conflict', `the server already uses the ${to} seal`);
      const version = config.rootVersion + 1;
      if (to === 'pkcs11') {
        const oldKey = await this.keyFromShares(shareTexts, config.threshold, config.rootCheck, aad.rootCheck(config.rootVersion), ROOT_CHECK_PLAINTEXT, 'root');
        try {
          const token = this.hsm();
          const label = this.rootLabel(version);
          await token.destroyByLabel(label);
          const handle = await token.generateRootKey(label);
          const next = new Pkcs11RootKey(token, handle, version, label);
          let switched;
          try {
            switched = await this.switchRoot(
              next,
              {
                seal_type: 'pkcs11',
                root_check: await next.wrapKey(ROOT_CHECK_PLAINTEXT, aad.rootCheck(version)),
                hsm_key_label: label,
                recovery_check: sealWithKey(oldKey, RECOVERY_CHECK_PLAINTEXT, sealAad.recoveryCheck()),
              },
              beforeCommit,
            );
          } catch (err) {
            await token.destroyObject(handle).catch(() => undefined);
            throw err;
          }
          switched.previous.destroy();
          return {
            seal_type: 'pkcs11',
            root_version: version,
            rewrapped: switched.rewrapped,
            message: `the HSM now seals this server and unseals it at start; the ${config.shares} unseal shares are now recovery shares (threshold ${config.threshold})`,
          };
        } finally {
          zeroize(oldKey);
        }
      }
      if (!config.recoveryCheck) throw new CofferError(409, 'conflict', 'this server has no recovery key');
      const recoveryKey = await this.keyFromShares(shareTexts, config.threshold, config.recoveryCheck, sealAad.recoveryCheck(), RECOVERY_CHECK_PLAINTEXT, 'recovery');
      const next = new InMemoryRootKey(Uint8Array.from(recoveryKey), version);
      try {
        const switched = await this.switchRoot(
          next,
          {
            seal_type: 'shamir',
            root_check: sealWithKey(recoveryKey, ROOT_CHECK_PLAINTEXT, aad.rootCheck(version)),
            hsm_key_label: null,
            recovery_check: null,
            root_chain: await this.services().keyring.rootKey.wrapKey(recoveryKey, sealAad.pendingRoot(version, config.rootVersion)),
          },
          beforeCommit,
        ).catch((err: unknown) => {
          next.destroy();
          throw err;
        });
        await this.retireHsmRoot(switched.previous);
        return {
          seal_type: 'shamir',
          root_version: version,
          rewrapped: switched.rewrapped,
          message: `the ${config.shares} recovery shares are now unseal shares (threshold ${config.threshold}); remove the PKCS#11 settings (COFFER_SEAL) before the next start`,
        };
      } finally {
        zeroize(recoveryKey);
      }
    });
  }

  /**
   * Another server sharing the database rotated or migrated the root key (a
   * change-feed event, or a KEK row under a newer root version). Follow it:
   * PKCS#11, by finding the new key object in the token; software root, by
   * unwrapping the new root with the one this server holds (root_chain). If
   * that is impossible (it moved on twice, or the HSM is unreachable), seal:
   * never keep serving with a root key that is no longer in effect.
   */
  followRoot(): Promise<void> {
    return this.exclusive(async () => {
      const services = this.unsealed;
      await this.load();
      const config = this.sealConfig;
      if (!services || !config) return;
      const current = services.keyring.rootKey;
      if (config.rootVersion <= current.version) return;
      try {
        let next: RootKey;
        if (config.sealType === 'pkcs11') {
          const token = this.hsm();
          const label = config.hsmKeyLabel ?? this.rootLabel(config.rootVersion);
          const handle = await token.findAesKey(label);
          if (!handle) throw new HsmUnavailableError(`the root key "${label}" is not on the token`);
          next = new Pkcs11RootKey(token, handle, config.rootVersion, label);
          zeroize(await next.unwrapKey(config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check'));
        } else {
          if (!config.rootChain || config.rootVersion !== current.version + 1) throw new Error('the root key moved on by more than one version');
          const bytes = await current.unwrapKey(config.rootChain, sealAad.pendingRoot(config.rootVersion, current.version), 'the root key chain');
          try {
            zeroize(openWithKey(bytes, config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check'));
          } catch (err) {
            zeroize(bytes);
            throw err;
          }
          next = new InMemoryRootKey(bytes, config.rootVersion);
        }
        const previous = services.keyring.replaceRoot(next);
        if (!(previous instanceof Pkcs11RootKey)) previous.destroy();
      } catch (err) {
        this.sealError = `the root key changed on another server and this one could not follow (${(err as Error).message}): unseal it again`;
        this.dropKeys();
      }
    });
  }

  /**
   * BYOK root import (PKCS#11 seal): `unwrapInto(label)` unwraps the customer's
   * key inside the token as the next root key version; everything is
   * rewrapped under it as in a rotation.
   */
  importRoot(
    unwrapInto: (token: Pkcs11Token, label: string) => Promise<Buffer>,
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<RotateRootResult> {
    return this.exclusive(async () => {
      this.services();
      const config = this.sealConfig!;
      if (config.sealType !== 'pkcs11') throw new CofferError(400, 'invalid_request', 'importing the root key needs the PKCS#11 seal (with Shamir, rotate-root makes a new one)');
      const token = this.hsm();
      const version = config.rootVersion + 1;
      const label = this.rootLabel(version);
      await token.destroyByLabel(label);
      const handle = await unwrapInto(token, label);
      return this.switchToHsmRoot(token, handle, version, label, beforeCommit);
    });
  }

  /**
   * Puts a root key object already in the HSM (generated or imported) in effect: every key is
   * rewrapped under it in one transaction; if that fails the new object is destroyed, and once it
   * succeeds the old one is.
   */
  private async switchToHsmRoot(
    token: Pkcs11Token,
    handle: Parameters<Pkcs11Token['destroyObject']>[0],
    version: number,
    label: string,
    beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
  ): Promise<RotateRootResult> {
    const next = new Pkcs11RootKey(token, handle, version, label);
    let switched;
    try {
      switched = await this.switchRoot(next, { root_check: await next.wrapKey(ROOT_CHECK_PLAINTEXT, aad.rootCheck(version)), hsm_key_label: label }, beforeCommit);
    } catch (err) {
      await token.destroyObject(handle).catch(() => undefined);
      throw err;
    }
    await this.retireHsmRoot(switched.previous);
    return { seal_type: 'pkcs11', root_version: version, rewrapped: switched.rewrapped, key_label: label };
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.transition.then(fn, fn);
    this.transition = run.catch(() => undefined);
    return run;
  }
}

/** What every init stores besides the seal configuration: the wrapped token-signing key and the first root token's row. */
async function insertFirstKeys(trx: Transaction<Database>, wrappedSigningKey: Uint8Array, rootVersion: number, rootAccessor: string): Promise<void> {
  await trx
    .insertInto('system_keys')
    .values({ name: TOKEN_SIGNING_KEY, version: 1, wrapped_key: wrappedSigningKey, root_version: rootVersion })
    .execute();
  await trx
    .insertInto('tokens')
    .values({ accessor: rootAccessor, identity: 'root', display_name: 'root', policies: JSON.stringify(['root']) })
    .execute();
}
