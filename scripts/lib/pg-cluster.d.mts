export const DIR_PREFIX: string;

export interface PostgresBinaries {
  binDir: string;
  initdb: string;
  pgCtl: string;
}

export type ShutdownMode = 'smart' | 'fast' | 'immediate';

export interface PostgresCluster {
  /** Superuser URL (database `postgres`). */
  url: string;
  port: number;
  dataDir: string;
  /** Stops it and deletes its directory. */
  stop(): Promise<void>;
  stopSync(): void;
  /** pg_ctl stop (waits until it is down); fault injection. */
  pauseServer(options?: { mode?: ShutdownMode }): Promise<void>;
  /** pg_ctl start on the same port and data (waits until it accepts connections). */
  resumeServer(): Promise<void>;
  /** pg_ctl restart (waits until it accepts connections again). */
  restartServer(options?: { mode?: ShutdownMode }): Promise<void>;
}

/** initdb and pg_ctl from PG_BINDIR, PATH or /usr/lib/postgresql/<highest>/bin; null if absent. */
export function findPostgresBinaries(): PostgresBinaries | null;

/** Quotes a value for the shell. */
export function shq(value: unknown): string;

/** Stops (immediate) and removes a cluster directory; synchronous, never throws. */
export function stopPostgresClusterSync(dataDir: string, options?: { binaries?: PostgresBinaries | null; runAs?: unknown }): void;

export function startPostgresCluster(options?: {
  log?: (message: string) => void;
  maxConnections?: number;
  /** Called as soon as the directory exists, so an interrupted caller can remove it. */
  onDataDir?: (dir: string) => void;
  /** Keep PostgreSQL's durability settings (fsync, synchronous_commit, full_page_writes) instead of switching them off. */
  durable?: boolean;
  /** Further server settings (`-c name=value`), applied after the defaults above. */
  settings?: Record<string, string>;
}): Promise<PostgresCluster>;
