/**
 * One typed, validated configuration. Sources, weakest first: built-in
 * defaults, an optional JSON file (`COFFER_CONFIG`), environment variables,
 * command-line flags. Nothing else in the server reads process.env.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors.js';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.union([z.boolean(), z.enum(['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off', ''])]).transform(
  (v) => v === true || v === '1' || v === 'true' || v === 'yes' || v === 'on',
);

export const configSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: int(0, 65535).default(8200),
  /** PostgreSQL connection string; when absent the embedded PGlite store is used. */
  databaseUrl: z.string().min(1).optional(),
  /** Where PGlite keeps its files (ignored with databaseUrl). */
  dataDir: z.string().min(1).default('./data'),
  dbPoolSize: int(1, 200).default(10),
  /** Try-it-out mode: throwaway in-memory store, initialised and unsealed at start. */
  dev: bool.default(false),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Largest accepted request body; larger ones get 413. */
  maxRequestBytes: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  /** Largest accepted restore upload (POST /v1/sys/restore): spooled to disk, not held in memory. */
  maxRestoreBytes: int(1024, Number.MAX_SAFE_INTEGER).default(64 * 1024 ** 3),
  /** Where a restore upload is spooled (a private, already-unlinked file); the OS temp dir when absent. */
  restoreSpoolDir: z.string().min(1).optional(),
  /** How long an unwrapped KEK stays in memory after its last use. */
  kekCacheTtlSeconds: int(1, 86_400).default(300),
  kekCacheMaxEntries: int(1, 1_000_000).default(1024),
  /** Unwrapped DEKs of recently read secret versions (0 = off); they leave with their KEK. */
  dekCacheMaxEntries: int(0, 10_000_000).default(10_000),
  /** Named KMS keys kept in memory with their unwrapped versions (0 = off). */
  kmsKeyCacheMaxEntries: int(0, 1_000_000).default(1024),
  /** Upper bound on how long a change made directly in the database (not through Coffer) can go unseen. */
  kmsKeyCacheTtlSeconds: int(1, 86_400).default(60),
  /** Latest encrypted versions kept in memory for reads without a database round trip (0 = off). */
  secretCacheMaxEntries: int(0, 10_000_000).default(10_000),
  /** Upper bound on how long a change made directly in the database (not through Coffer) can go unseen. */
  secretCacheTtlSeconds: int(1, 86_400).default(60),
  /** Bytes of decrypted values kept with cached bulk-read folder pages (0 = none: every bulk read decrypts). */
  secretCacheValueBytes: int(0, 4_294_967_296).default(16 * 1024 * 1024),
  /**
   * Audit sinks, comma-separated: `db` (hash-chained, in the database), `stdout`,
   * `file:/path/audit.log` (JSON lines, fsynced). `none` turns auditing off.
   */
  auditSinks: z
    .string()
    .default('db')
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .refine(
      (list) => list.length > 0 && list.every((s) => s === 'db' || s === 'stdout' || s === 'none' || /^file:.+/.test(s)),
      'audit sinks are db, stdout, file:/path or none',
    )
    .refine((list) => !list.includes('none') || list.length === 1, '"none" cannot be combined with other audit sinks'),
  /** A sink slower than this fails the request (503) instead of hanging it. */
  auditTimeoutMs: int(100, 120_000).default(5000),
  /** Sign a checkpoint of the chain every this many entries (and at shutdown and seal). */
  auditCheckpointEvery: int(1, 1_000_000).default(1000),
  auditMaxBatch: int(1, 10_000).default(500),
  /**
   * An audit intent older than this belongs to a request that is over without its entry
   * (failed append, dead server): it is turned into an entry with outcome "unknown".
   * Longer than any request runs. On PGlite an earlier process's intents are recovered at start-up.
   */
  auditRecoverAfterSeconds: int(1, 86_400).default(120),
  /** Versions kept per secret unless the secret says otherwise. */
  defaultMaxVersions: int(1, 1000).default(10),
  /**
   * Writes to one namespace arriving at this server while one is in progress are written
   * together, up to this many in one transaction (1: each on its own).
   */
  writeCombineMax: int(1, 256).default(32),
  /** Largest page a list or bulk call returns. */
  maxPageSize: int(1, 10_000).default(1000),
  // --- identity and tokens ---
  /** Lifetime of a token from a login unless the role says otherwise. */
  tokenDefaultTtlSeconds: int(60, 10 * 365 * 86_400).default(3600),
  /** No token (except root) lives longer than this, renewals included. */
  tokenMaxTtlSeconds: int(60, 10 * 365 * 86_400).default(86_400),
  /** Login requests per second per client address (burst 2×); 0 = unlimited. */
  loginRatePerSecond: int(0, 1_000_000).default(10),
  /** Consecutive failed logins of one user/role from one client address before that address is locked out of it (doubling each further failure). */
  loginMaxFailures: int(1, 1000).default(5),
  /** Consecutive failed logins of one user/role from all addresses together before it is locked for everyone (admins can unlock). */
  loginMaxFailuresTotal: int(1, 1_000_000).default(100),
  loginLockoutSeconds: int(1, 86_400).default(1),
  loginLockoutMaxSeconds: int(1, 86_400).default(900),
  /** argon2id parameters for new password hashes; never below OWASP's m=19 MiB, t=2, p=1. */
  argon2MemoryKib: int(19_456, 4 * 1024 * 1024).default(19_456),
  argon2Iterations: int(2, 100).default(2),
  argon2Parallelism: int(1, 64).default(1),
  /** Least time between JWKS refetches caused by a token with an unknown key id. */
  jwksCooldownSeconds: z.coerce.number().min(0).max(3600).default(10),
  /** How long a fetched JWKS is trusted before it is fetched again. */
  jwksCacheMaxAgeSeconds: int(1, 86_400).default(600),
  // --- KEK lifecycle ---
  /**
   * Rotate a namespace's KEK automatically once this many DEKs were wrapped under its
   * current version. NIST SP 800-38D bounds AES-GCM with random 96-bit nonces at 2^32
   * encryptions per key; Coffer's XChaCha20-Poly1305 (192-bit nonces) has no such bound
   * in practice, so this is a conservative limit. Default 2^31, at most 2^32.
   */
  kekRotateAfterEncryptions: int(10, 2 ** 32).default(2 ** 31),
  /** Encryptions a server reserves per database round trip when counting KEK usage. */
  kekUsageReserveBlock: int(1, 1_000_000).default(1000),
  /** Secrets per rewrap batch (one transaction each). */
  kekRewrapBatchSize: int(1, 100_000).default(1000),
  /** Pause between rewrap batches, to spread the job's database load (and to let tests kill it mid-way). */
  kekRewrapBatchDelayMs: int(0, 60_000).default(0),
  /** How often a server looks for due work: scheduled/usage rotations, rewrap jobs, due shreds. */
  kekJobIntervalSeconds: int(1, 86_400).default(30),
  /** Run the background KEK jobs on this server (off: tests drive them; another server does). */
  kekRunJobs: bool.default(true),
  /** Scheduled backups (jobs/scheduled-backup.ts): written to this directory while unsealed; none without it. */
  backupDir: z.string().min(1).optional(),
  /** How often a scheduled backup is written. */
  backupIntervalSeconds: int(60, 30 * 86_400).default(86_400),
  /** How many scheduled backups are kept (the oldest are deleted). */
  backupKeep: int(1, 10_000).default(7),
  // --- operations ---
  /** TLS certificate chain (PEM) and its key; both or neither. Reloaded on SIGHUP. */
  tlsCertFile: z.string().min(1).optional(),
  tlsKeyFile: z.string().min(1).optional(),
  /** CA bundle (PEM) for client certificates: requested, verified, and usable to log in through certificate roles. */
  tlsClientCaFile: z.string().min(1).optional(),
  /** Serve plain HTTP on a non-loopback address (a TLS-terminating proxy in front). */
  allowInsecureHttp: bool.default(false),
  /** `host:port` of a separate, unauthenticated listener serving only GET /v1/sys/metrics. */
  metricsListen: z
    .string()
    .refine((v) => parseHostPort(v) !== null, 'metrics listen address must be host:port (e.g. 127.0.0.1:9102 or [::1]:9102)')
    .optional(),
  /** Log every request at info (request id, method, route template, status, duration). */
  requestLog: bool.default(false),
  /**
   * Longest time a client may take to send one whole request (headers and body); then it gets
   * 408 and its connection is closed. Headers alone get at most 10 s of it.
   */
  requestTimeoutSeconds: int(1, 3600).default(30),
  /** How long SIGTERM waits for in-flight requests before cutting their connections. */
  shutdownTimeoutSeconds: int(0, 3600).default(10),
  // --- seal (root key) ---
  /** Where a new server's root key goes at init: Shamir shares, or a PKCS#11 token (HSM). */
  seal: z.enum(['shamir', 'pkcs11']).default('shamir'),
  /** PKCS#11 library path, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  pkcs11Module: z.string().min(1).optional(),
  /** Token label (SoftHSM2 assigns random slot ids, so the label is the stable name), or… */
  pkcs11TokenLabel: z.string().min(1).max(32).optional(),
  /** …the slot id. */
  pkcs11Slot: int(0, Number.MAX_SAFE_INTEGER).optional(),
  /** User PIN; prefer pkcs11PinFile so it is not in the environment. Never logged. */
  pkcs11Pin: z.string().min(1).optional(),
  pkcs11PinFile: z.string().min(1).optional(),
  /** Label prefix of the root key objects: <label>-v<root version>. */
  pkcs11KeyLabel: z.string().regex(/^[A-Za-z0-9._-]{1,48}$/, 'key label: 1-48 of A-Z a-z 0-9 . _ -').default('coffer-root'),
  /** Sessions open for concurrent HSM operations. */
  pkcs11Sessions: int(1, 32).default(2),
});

/** `127.0.0.1:9102`, `[::1]:9102`, `localhost:9102` → host and port; null if malformed. */
export function parseHostPort(value: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return null;
  const port = Number(m[3]);
  return port <= 65535 ? { host: (m[1] ?? m[2])!, port } : null;
}

/** Rules across settings, checked after each setting is valid on its own. */
function crossFieldProblems(c: z.infer<typeof configSchema>): string[] {
  const problems: string[] = [];
  if (Boolean(c.tlsCertFile) !== Boolean(c.tlsKeyFile)) problems.push('tlsCertFile and tlsKeyFile go together (COFFER_TLS_CERT_FILE, COFFER_TLS_KEY_FILE)');
  if (c.kekUsageReserveBlock >= c.kekRotateAfterEncryptions) {
    problems.push('kekUsageReserveBlock must be smaller than kekRotateAfterEncryptions (COFFER_KEK_USAGE_RESERVE_BLOCK, COFFER_KEK_ROTATE_AFTER_ENCRYPTIONS)');
  }
  if (c.tlsClientCaFile && !c.tlsCertFile) problems.push('tlsClientCaFile needs TLS (COFFER_TLS_CERT_FILE, COFFER_TLS_KEY_FILE)');
  if (c.seal === 'pkcs11' || c.pkcs11Module) {
    if (!c.pkcs11Module) problems.push('the pkcs11 seal needs COFFER_PKCS11_MODULE');
    if ((c.pkcs11TokenLabel === undefined) === (c.pkcs11Slot === undefined)) problems.push('PKCS#11: set exactly one of COFFER_PKCS11_TOKEN_LABEL and COFFER_PKCS11_SLOT');
    if ((c.pkcs11Pin === undefined) === (c.pkcs11PinFile === undefined)) problems.push('PKCS#11: set exactly one of COFFER_PKCS11_PIN and COFFER_PKCS11_PIN_FILE');
  }
  if (c.tokenDefaultTtlSeconds > c.tokenMaxTtlSeconds) problems.push('tokenDefaultTtlSeconds cannot exceed tokenMaxTtlSeconds');
  if (c.loginLockoutSeconds > c.loginLockoutMaxSeconds) problems.push('loginLockoutSeconds cannot exceed loginLockoutMaxSeconds');
  if (c.loginMaxFailuresTotal < c.loginMaxFailures) problems.push('loginMaxFailuresTotal cannot be below loginMaxFailures');
  return problems;
}

export type Config = z.infer<typeof configSchema>;

const ENV: Record<string, keyof Config> = {
  COFFER_HOST: 'host',
  COFFER_PORT: 'port',
  COFFER_DATABASE_URL: 'databaseUrl',
  COFFER_DATA_DIR: 'dataDir',
  COFFER_DB_POOL_SIZE: 'dbPoolSize',
  COFFER_DEV: 'dev',
  COFFER_LOG_LEVEL: 'logLevel',
  COFFER_MAX_REQUEST_BYTES: 'maxRequestBytes',
  COFFER_MAX_RESTORE_BYTES: 'maxRestoreBytes',
  COFFER_RESTORE_SPOOL_DIR: 'restoreSpoolDir',
  COFFER_KEK_CACHE_TTL_SECONDS: 'kekCacheTtlSeconds',
  COFFER_KEK_CACHE_MAX_ENTRIES: 'kekCacheMaxEntries',
  COFFER_DEK_CACHE_MAX_ENTRIES: 'dekCacheMaxEntries',
  COFFER_KMS_KEY_CACHE_MAX_ENTRIES: 'kmsKeyCacheMaxEntries',
  COFFER_KMS_KEY_CACHE_TTL_SECONDS: 'kmsKeyCacheTtlSeconds',
  COFFER_SECRET_CACHE_MAX_ENTRIES: 'secretCacheMaxEntries',
  COFFER_SECRET_CACHE_TTL_SECONDS: 'secretCacheTtlSeconds',
  COFFER_SECRET_CACHE_VALUE_BYTES: 'secretCacheValueBytes',
  COFFER_DEFAULT_MAX_VERSIONS: 'defaultMaxVersions',
  COFFER_WRITE_COMBINE_MAX: 'writeCombineMax',
  COFFER_AUDIT_SINKS: 'auditSinks',
  COFFER_AUDIT_TIMEOUT_MS: 'auditTimeoutMs',
  COFFER_AUDIT_CHECKPOINT_EVERY: 'auditCheckpointEvery',
  COFFER_AUDIT_MAX_BATCH: 'auditMaxBatch',
  COFFER_AUDIT_RECOVER_AFTER_SECONDS: 'auditRecoverAfterSeconds',
  COFFER_MAX_PAGE_SIZE: 'maxPageSize',
  COFFER_KEK_ROTATE_AFTER_ENCRYPTIONS: 'kekRotateAfterEncryptions',
  COFFER_KEK_USAGE_RESERVE_BLOCK: 'kekUsageReserveBlock',
  COFFER_KEK_REWRAP_BATCH_SIZE: 'kekRewrapBatchSize',
  COFFER_KEK_REWRAP_BATCH_DELAY_MS: 'kekRewrapBatchDelayMs',
  COFFER_KEK_JOB_INTERVAL_SECONDS: 'kekJobIntervalSeconds',
  COFFER_KEK_RUN_JOBS: 'kekRunJobs',
  COFFER_BACKUP_DIR: 'backupDir',
  COFFER_BACKUP_INTERVAL_SECONDS: 'backupIntervalSeconds',
  COFFER_BACKUP_KEEP: 'backupKeep',
  COFFER_TLS_CERT_FILE: 'tlsCertFile',
  COFFER_TLS_KEY_FILE: 'tlsKeyFile',
  COFFER_TLS_CLIENT_CA_FILE: 'tlsClientCaFile',
  COFFER_ALLOW_INSECURE_HTTP: 'allowInsecureHttp',
  COFFER_METRICS_LISTEN: 'metricsListen',
  COFFER_REQUEST_LOG: 'requestLog',
  COFFER_SHUTDOWN_TIMEOUT_SECONDS: 'shutdownTimeoutSeconds',
  COFFER_REQUEST_TIMEOUT_SECONDS: 'requestTimeoutSeconds',
  COFFER_SEAL: 'seal',
  COFFER_PKCS11_MODULE: 'pkcs11Module',
  COFFER_PKCS11_TOKEN_LABEL: 'pkcs11TokenLabel',
  COFFER_PKCS11_SLOT: 'pkcs11Slot',
  COFFER_PKCS11_PIN: 'pkcs11Pin',
  COFFER_PKCS11_PIN_FILE: 'pkcs11PinFile',
  COFFER_PKCS11_KEY_LABEL: 'pkcs11KeyLabel',
  COFFER_PKCS11_SESSIONS: 'pkcs11Sessions',
  COFFER_TOKEN_DEFAULT_TTL_SECONDS: 'tokenDefaultTtlSeconds',
  COFFER_TOKEN_MAX_TTL_SECONDS: 'tokenMaxTtlSeconds',
  COFFER_LOGIN_RATE_PER_SECOND: 'loginRatePerSecond',
  COFFER_LOGIN_MAX_FAILURES: 'loginMaxFailures',
  COFFER_LOGIN_MAX_FAILURES_TOTAL: 'loginMaxFailuresTotal',
  COFFER_LOGIN_LOCKOUT_SECONDS: 'loginLockoutSeconds',
  COFFER_LOGIN_LOCKOUT_MAX_SECONDS: 'loginLockoutMaxSeconds',
  COFFER_ARGON2_MEMORY_KIB: 'argon2MemoryKib',
  COFFER_ARGON2_ITERATIONS: 'argon2Iterations',
  COFFER_ARGON2_PARALLELISM: 'argon2Parallelism',
  COFFER_JWKS_COOLDOWN_SECONDS: 'jwksCooldownSeconds',
  COFFER_JWKS_CACHE_MAX_AGE_SECONDS: 'jwksCacheMaxAgeSeconds',
};

// Defined with the other shared errors (the TLS loader throws it too, without importing the config).
export { ConfigError };

/** Builds the config from env, an optional file and overrides (from flags); throws ConfigError with every problem listed. */
export function loadConfig(
  env: NodeJS.ProcessEnv,
  overrides: Partial<Record<keyof Config, unknown>> = {},
): Config {
  let fromFile: Record<string, unknown> = {};
  const file = env.COFFER_CONFIG;
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
      throw new ConfigError(`config file ${file} must hold a JSON object`);
    }
  }
  const fromEnv: Record<string, unknown> = {};
  for (const [name, key] of Object.entries(ENV)) {
    const value = env[name];
    if (value !== undefined && value !== '') fromEnv[key] = value;
  }
  const merged = { ...fromFile, ...fromEnv, ...stripUndefined(overrides) };
  const parsed = configSchema.strict().safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const crossField = crossFieldProblems(parsed.data);
  if (crossField.length > 0) throw new ConfigError(`invalid configuration: ${crossField.join('; ')}`);
  return parsed.data;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The PKCS#11 settings, with the PIN read from its file; null when no HSM is
 * configured. The PIN never appears in an error message.
 */
export function pkcs11SettingsOf(c: Config): {
  module: string;
  tokenLabel: string | undefined;
  slot: number | undefined;
  pin: string;
  sessions: number;
  keyLabel: string;
} | null {
  if (!c.pkcs11Module) return null;
  let pin = c.pkcs11Pin;
  if (c.pkcs11PinFile) {
    try {
      pin = readFileSync(c.pkcs11PinFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new ConfigError(`cannot read the PKCS#11 PIN file ${c.pkcs11PinFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (pin === '') throw new ConfigError(`the PKCS#11 PIN file ${c.pkcs11PinFile} is empty`);
  }
  return {
    module: c.pkcs11Module,
    tokenLabel: c.pkcs11TokenLabel,
    slot: c.pkcs11Slot,
    pin: pin!,
    sessions: c.pkcs11Sessions,
    keyLabel: c.pkcs11KeyLabel,
  };
}
/** The identity options the core needs, from the config. */
export function authOptionsOf(c: Config): AuthOptions {
  return {
    tokens: { defaultTtlSeconds: c.tokenDefaultTtlSeconds, maxTtlSeconds: c.tokenMaxTtlSeconds },
    guard: {
      ratePerSecond: c.loginRatePerSecond,
      maxFailures: c.loginMaxFailures,
      maxFailuresTotal: c.loginMaxFailuresTotal,
      lockoutBaseMs: c.loginLockoutSeconds * 1000,
      lockoutMaxMs: c.loginLockoutMaxSeconds * 1000,
    },
    argon2: { memoryCost: c.argon2MemoryKib, timeCost: c.argon2Iterations, parallelism: c.argon2Parallelism },
    jwt: { jwksCooldownMs: c.jwksCooldownSeconds * 1000, jwksCacheMaxAgeMs: c.jwksCacheMaxAgeSeconds * 1000, httpTimeoutMs: 5000 },
  };
}

/**
 * The identity options, in the config's own terms: config.ts imports nothing of the
 * services, and the compiler checks these against what the services take where the
 * server is put together (server.ts).
 */
export interface AuthOptions {
  tokens: { defaultTtlSeconds: number; maxTtlSeconds: number };
  guard: { ratePerSecond: number; maxFailures: number; maxFailuresTotal: number; lockoutBaseMs: number; lockoutMaxMs: number };
  argon2: { memoryCost: number; timeCost: number; parallelism: number };
  jwt: { jwksCooldownMs: number; jwksCacheMaxAgeMs: number; httpTimeoutMs: number };
}
