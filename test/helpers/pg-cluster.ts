// A private PostgreSQL cluster (scripts/pg-cluster.mjs) for suites that stop, start or restart
// the database: the shared test cluster must never be taken down under other suites.
import { fileURLToPath, pathToFileURL } from 'node:url';

type ShutdownMode = 'smart' | 'fast' | 'immediate';

export interface PrivateCluster {
  /** Superuser URL of database `postgres`. */
  url: string;
  port: number;
  dataDir: string;
  /** pg_ctl stop (waits until it is down). */
  pauseServer(options?: { mode?: ShutdownMode }): Promise<void>;
  /** pg_ctl start on the same port and data (waits until it accepts connections). */
  resumeServer(): Promise<void>;
  /** pg_ctl restart (waits until it accepts connections again). */
  restartServer(options?: { mode?: ShutdownMode }): Promise<void>;
  /** Stops it and deletes its directory. */
  stop(): Promise<void>;
  stopSync(): void;
}

const SCRIPT = fileURLToPath(new URL('../../../scripts/pg-cluster.mjs', import.meta.url));

export async function startPrivateCluster(): Promise<PrivateCluster> {
  const mod = (await import(pathToFileURL(SCRIPT).href)) as { startPostgresCluster(options?: { maxConnections?: number }): Promise<PrivateCluster> };
  const cluster = await mod.startPostgresCluster({ maxConnections: 50 });
  // However jest ends this worker, the cluster must not outlive it.
  process.once('exit', () => cluster.stopSync());
  return cluster;
}
