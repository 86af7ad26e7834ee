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
import { LoginGuard } from '../auth/login-guard.js';
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
import { KekLifecycle } from '../kms/kek-lifecycle.js';
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
import { followRoot } from '../vault/follow-root.js';
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
  const audit = new AuditLog(db, auditOptions(config, storage), logger);
  const repos = createRepos(db);
  // Dev mode is a throwaway Shamir server whatever else is configured.
  const seals = new Seals([new ShamirSeal(), new Pkcs11Seal(config.dev ? null : pkcs11SettingsOf(config))], config.dev ? 'shamir' : config.seal);
  const auth = authOptionsOf(config);
  const readCache = new SecretReadCache(config.secretCacheMaxEntries, config.secretCacheTtlSeconds * 1000);
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
  dispatchChanges(changes, { readCache, unsealed: () => vault.unsealed, followRoot: () => followRoot(vault), onError: log.error });
  const core = new CofferCore(vault, audit, readCache);
  const metrics = new CofferMetrics({ core, poolStats: storage.poolStats?.bind(storage) });
  return { core, audit, metrics };

  /** Setup at every unseal, in order; on a failure the keyring (and with it the root key) is zeroed. */
  async function openServices(root: RootKey): Promise<{ services: Services; startJobs(): void }> {
    const keyring = new Keyring(db, root, {
      ttlMs: config.kekCacheTtlSeconds * 1000,
      maxEntries: config.kekCacheMaxEntries,
    });
    keyring.onRootBehind = () => followRoot(vault);
    try {
      const row = await repos.systemKeys.require(TOKEN_SIGNING_KEY);
      const signingKey = await keyring.unwrapSystemKey(row.name, row.version, row.wrapped_key, row.root_version);
      const policies = new PolicyStore(db, changes);
      await policies.loadAll();
      const tokens = new TokenService(db, signingKey, changes, policies, auth.tokens);
      audit.setKey(await openSystemKey(repos.systemKeys, keyring, AUDIT_KEY));
      await tokens.load();
      const secretChanges = { cache: readCache, feed: changes };
      const namespaces = new NamespaceService(db, keyring, secretChanges);
      const usage = new KekUsage(config.kekUsageReserveBlock, config.kekRotateAfterEncryptions);
      const secrets = new SecretService(db, keyring, namespaces, secretChanges, config.defaultMaxVersions, usage);
      const kek = new KekLifecycle(db, keyring, namespaces, secretChanges, usage, {
        rewrapBatchSize: config.kekRewrapBatchSize,
        rewrapBatchDelayMs: config.kekRewrapBatchDelayMs,
        jobIntervalMs: config.kekJobIntervalSeconds * 1000,
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
      // False: no background runner (tests drive `services().kek` by hand).
      const runJobs = config.kekRunJobs;
      if (runJobs) {
        namespaces.onKekRotated = () => kek.kick();
        secrets.onUsageLimit = () => kek.kick();
      }
      const guard = new LoginGuard(auth.guard);
      const services: Services = {
        keyring,
        tokens,
        namespaces,
        secrets,
        policies,
        userpass: new UserpassService(db, tokens, guard, auth.argon2),
        approle: new AppRoleService(db, tokens, guard),
        jwt: new JwtAuthService(db, tokens, guard, auth.jwt),
        cert: new CertAuthService(db, tokens, guard),
        kek,
        byok: new ByokService({
          db,
          namespaces,
          keyring,
          imports: { inSeal: () => vault.capabilities()?.keyImport === true, device: () => vault.importDevice() },
          importRoot: (unwrapInto, beforeCommit) => importRoot(vault, unwrapInto, beforeCommit),
        }),
        escrow: new EscrowService({ db, namespaces, keyring }),
      };
      return { services, startJobs: () => (runJobs ? kek.start() : undefined) };
    } catch (err) {
      keyring.destroy();
      throw err;
    }
  }
}
