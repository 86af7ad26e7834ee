/**
 * One typed, validated configuration. Sources, weakest first: built-in
 * defaults, an optional JSON file (`COFFER_CONFIG`), environment variables,
 * command-line flags. Nothing else in the server reads process.env.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

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
  /** How long an unwrapped KEK stays in memory after its last use. */
  kekCacheTtlSeconds: int(1, 86_400).default(300),
  kekCacheMaxEntries: int(1, 1_000_000).default(1024),
  /** Latest encrypted versions kept in memory for reads without a database round trip (0 = off). */
  secretCacheMaxEntries: int(0, 10_000_000).default(10_000),
  /** Upper bound on how long a change made directly in the database (not through Coffer) can go unseen. */
  secretCacheTtlSeconds: int(1, 86_400).default(60),
  /** Versions kept per secret unless the secret says otherwise. */
  defaultMaxVersions: int(1, 1000).default(10),
  /** Largest page a list or bulk call returns. */
  maxPageSize: int(1, 10_000).default(1000),
});

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
  COFFER_KEK_CACHE_TTL_SECONDS: 'kekCacheTtlSeconds',
  COFFER_KEK_CACHE_MAX_ENTRIES: 'kekCacheMaxEntries',
  COFFER_SECRET_CACHE_MAX_ENTRIES: 'secretCacheMaxEntries',
  COFFER_SECRET_CACHE_TTL_SECONDS: 'secretCacheTtlSeconds',
  COFFER_DEFAULT_MAX_VERSIONS: 'defaultMaxVersions',
  COFFER_MAX_PAGE_SIZE: 'maxPageSize',
};

export class ConfigError extends Error {}

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
  return parsed.data;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
