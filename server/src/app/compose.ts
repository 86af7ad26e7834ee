/**
 * The composition root: the one place the server's parts are built and wired,
 * in the order they depend on each other. At start: repositories, seals, the
 * vault, the change-feed dispatch. At every unseal (openServices, OpenBao's
 * unsealShared): keyring → system keys → auth → secrets and KMS → jobs. The
 * teardown at seal is the vault's (vault.ts, dropKeys) plus `preSeal` here.
 */
import type { Logger } from 'pino';
import { AuditLog, type AuditOptions } from '../audit/audit-log.js';
import { systemDraft } from '../audit/entry.js';
import { FileSink, StdoutSink, type LineSink } from '../audit/sinks.js';
import { AppRoleService } from '../auth/approle.js';
import { CertAuthService } from '../auth/cert.js';
import { JwtAuthService } from '../auth/jwt.js';
import { LoginGuard, SharedLockouts } from '../auth/login-guard.js';
import { PolicyStore } from '../auth/policy-store.js';
import { TOKEN_SIGNING_KEY, TokenService } from '../auth/tokens.js';
import { UserpassService } from '../auth/userpass.js';
import { dispatchChanges } from '../cluster/dispatch.js';
import { authOptionsOf, pkcs11SettingsOf, type Config } from '../config.js';
import { CofferCore } from '../core.js';
import { Keyring } from '../keyring/keyring.js';
import { openSystemKey } from '../keyring/system-key.js';
import { KekUsage } from '../keyring/usage.js';
import { ByokService } from '../kms/byok.js';
import { EscrowService } from '../kms/escrow.js';
import { NamespaceTransfer } from '../kms/namespace-transfer/index.js';
import { JobScheduler } from '../jobs/scheduler.js';
import { scheduledBackupJob } from '../jobs/scheduled-backup.js';
import { KEK_JOBS, kekJobs } from '../kms/kek-jobs.js';
import { KekLifecycle } from '../kms/kek-lifecycle.js';
import { createKms, KmsKeyCache } from '../kms/named-keys/index.js';
import { kmsRotationJob } from '../kms/named-keys/jobs.js';
import { CofferMetrics } from '../ops/metrics.js';
import { Pkcs11Seal } from '../seal/pkcs11-seal.js';
import type { RootKey } from '../seal/root-key.js';
import { Seals } from '../seal/seal.js';
import { ShamirSeal } from '../seal/shamir-seal.js';
import { NamespaceService } from '../secrets/namespace-service.js';
import { SecretReadCache } from '../secrets/read-cache.js';
import { SecretService } from '../secrets/secret-service.js';
import type { Storage } from '../storage/db.js';
import { createRepos } from '../storage/repos/index.js';
import { followInit, followRoot } from '../vault/follow-root.js';
import { importRoot } from '../vault/rotate-root.js';
import type { Services } from '../vault/services.js';
import { Vault } from '../vault/vault.js';

const AUDIT_KEY = 'audit';

export interface Composed {
  core: CofferCore;
  audit: AuditLog;
  metrics: CofferMetrics;
}

function auditOptions(config: Config, storage: Storage): AuditOptions {
  const sinks = config.auditSinks.filter((s) => s !== 'none');
  return {
    database: sinks.includes('db'),
    lines: sinks.flatMap((s): LineSink[] => (s === 'stdout' ? [new StdoutSink()] : s.startsWith('file:') ? [new FileSink(s.slice(5))] : [])),
    timeoutMs: config.auditTimeoutMs,
    checkpointEvery: config.auditCheckpointEvery,
    maxBatch: config.auditMaxBatch,
    // PGlite's data directory is locked to this process: intents found at start-up are an earlier process's.
    exclusive: storage.kind === 'pglite',
    recoverAfterMs: config.auditRecoverAfterSeconds * 1000,
  };
}

export function compose(config: Config, storage: Storage, logger: Logger): Composed {
  const { db, changes } = storage;
  const repos = createRepos(db);
  const audit = new AuditLog({ audit: repos.audit, intents: repos.auditIntents }, auditOptions(config, storage), logger);
  // Dev mode is a throwaway Shamir server whatever else is configured.
  const seals = new Seals([new ShamirSeal(), new Pkcs11Seal(config.dev ? null : pkcs11SettingsOf(config))], config.dev ? 'shamir' : config.seal);
  const auth = authOptionsOf(config);
  const readCache = new SecretReadCache(config.secretCacheMaxEntries, config.secretCacheTtlSeconds * 1000, Date.now, config.secretCacheValueBytes);
  const log = {
    error: (what: string, err: unknown) => logger.error({ err: err instanceof Error ? { name: err.name, message: err.message } : String(err) }, what),
    event: (what: string, fields: Record<string, unknown>) => logger.info(fields, what),
  };

  const vault = new Vault({
    db,
    repos,
    seals,
    changes,
    audit,
    open: openServices,
    preSeal: [() => audit.setKey(null), () => readCache.reset(changes.up)],
    onTransition: (state, fields) => logger.info(fields, state),
  });
  dispatchChanges(changes, {
    readCache,
    unsealed: () => vault.unsealed,
    followRoot: () => followRoot(vault),
    followInit: () => followInit(vault, { onError: (err) => log.error('automatic unseal after an init on another server failed', err) }),
    onError: log.error,
    // A newer server's event during a rolling upgrade is expected; anything else on our channel is not.
    onIgnored: (problem, kind) =>
      problem === 'unknown-kind' ? logger.debug({ kind }, 'change notification of an unknown kind ignored') : logger.warn({ kind }, 'malformed change notification ignored'),
  });
  const core = new CofferCore(vault, audit, readCache, storage.kind, { maxBytes: config.maxRestoreBytes, dir: config.restoreSpoolDir });
  const metrics = new CofferMetrics({
    core,
    kekCache: () => (core.isSealed ? undefined : core.services().keyring),
    kmsKeyCache: () => (core.isSealed ? undefined : core.services().kms.cache),
    poolStats: storage.poolStats?.bind(storage),
  });
  return { core, audit, metrics };

  /** Setup at every unseal, in order; on a failure the keyring (and with it the root key) is zeroed. */
  async function openServices(root: RootKey): Promise<{ services: Services; jobs: JobScheduler }> {
    const keyring = new Keyring(repos.namespaceKeys, root, {
      ttlMs: config.kekCacheTtlSeconds * 1000,
      maxEntries: config.kekCacheMaxEntries,
      dekMaxEntries: config.dekCacheMaxEntries,
    });
    keyring.onRootBehind = () => followRoot(vault);
    try {
      const row = await repos.systemKeys.require(TOKEN_SIGNING_KEY);
      const signingKey = await keyring.unwrapSystemKey(row.name, row.version, row.wrapped_key, row.root_version);
      const policies = new PolicyStore(repos.policies, changes);
      await policies.loadAll();
      const tokens = new TokenService(repos.tokens, signingKey, changes, policies, auth.tokens);
      audit.setKey(await openSystemKey(repos.systemKeys, keyring, AUDIT_KEY));
      await tokens.load();
      // Off while the feed is down (dispatch turns it on and off): its invalidation comes through the feed.
      const kmsKeys = new KmsKeyCache(config.kmsKeyCacheMaxEntries, config.kmsKeyCacheTtlSeconds * 1000, changes.up);
      const secretChanges = { cache: readCache, feed: changes, kmsKeys };
      const namespaces = new NamespaceService(db, repos, keyring, secretChanges);
      const usage = new KekUsage(config.kekUsageReserveBlock, config.kekRotateAfterEncryptions);
      const secrets = new SecretService(db, repos, keyring, namespaces, secretChanges, config.defaultMaxVersions, usage, config.writeCombineMax);
      const kms = createKms(db, { repo: repos.kmsKeys, namespaces, keyring, feed: changes, cache: kmsKeys, device: () => vault.importDevice() });
      namespaces.beforeDelete = (namespaceId, trx) => kms.keys.destroyNamespaceDeviceKeys(namespaceId, trx);
      const kek = new KekLifecycle(db, repos.kekLifecycle, keyring, namespaces, secretChanges, usage, {
        namedKeys: kms.keys,
        rewrapBatchSize: config.kekRewrapBatchSize,
        rewrapBatchDelayMs: config.kekRewrapBatchDelayMs,
        onError: (what, err) => log.error(what, err),
        onEvent: (what, fields) => log.event(what, fields),
        audit: (event) =>
          audit.append(
            systemDraft({ id: 'system:kek-lifecycle', display_name: 'KEK lifecycle job' }, event.action, {
              namespace: event.namespace,
              version: event.kekVersion,
            }),
          ),
      });
      // The vault starts them once the services are in place and stops them (waiting) at seal and shutdown.
      const jobs = new JobScheduler({ locks: storage.jobLocks, onError: log.error, observer: metrics.jobs });
      // False: no background jobs (tests drive `services().kek` and `services().kms` by hand).
      if (config.kekRunJobs) {
        jobs.add(kmsRotationJob(kms.keys, config.kekJobIntervalSeconds * 1000));
        for (const job of kekJobs(kek, config.kekJobIntervalSeconds * 1000, (name) => jobs.kick(name))) jobs.add(job);
        namespaces.onKekRotated = () => jobs.kick(KEK_JOBS.rewrap);
        secrets.onUsageLimit = () => jobs.kick(KEK_JOBS.rotation);
        kek.onRewrapDue = () => jobs.kick(KEK_JOBS.rewrap);
      }
      if (config.backupDir) {
        const dir = config.backupDir;
        jobs.add(
          scheduledBackupJob({
            dir,
            intervalMs: config.backupIntervalSeconds * 1000,
            keep: config.backupKeep,
            backup: (write) => core.backup(write),
            onWritten: (file, bytes) => log.event('scheduled backup written', { dir, file, bytes }),
          }),
        );
      }
      // Failure counts in the database: every server sharing it draws on one guessing budget.
      const guard = new LoginGuard(auth.guard, { lockouts: new SharedLockouts(repos.loginFailures, auth.guard, log.error) });
      const byok = new ByokService({
        db,
        importKeys: repos.importKeys,
        namespaces,
        keyring,
        imports: { inSeal: () => vault.capabilities()?.keyImport === true, device: () => vault.importDevice() },
        importRoot: (unwrapInto, beforeCommit) => importRoot(vault, unwrapInto, beforeCommit),
      });
      const services: Services = {
        keyring,
        tokens,
        namespaces,
        secrets,
        policies,
        userpass: new UserpassService(repos.userpass, tokens, guard, auth.argon2),
        approle: new AppRoleService(repos.approle, tokens, guard),
        jwt: new JwtAuthService(repos.jwt, tokens, guard, auth.jwt),
        cert: new CertAuthService(repos.cert, tokens, guard),
        kek,
        byok,
        namespaceTransfer: new NamespaceTransfer({ db, repos, namespaces, keyring, keyStore: kms.keys.store, byok, changes: secretChanges }),
        escrow: new EscrowService({ db, escrowRequests: repos.escrowRequests, namespaceKeys: repos.namespaceKeys, namespaces, keyring }),
        kms,
      };
      return { services, jobs };
    } catch (err) {
      keyring.destroy();
      throw err;
    }
  }
}
