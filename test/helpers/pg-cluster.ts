// A private PostgreSQL cluster (scripts/lib/pg-cluster.mjs) for suites that stop, start or restart
// the database: the shared test cluster must never be taken down under other suites.
import { startPostgresCluster, type PostgresCluster } from '#lib/pg-cluster.mjs';

export type PrivateCluster = PostgresCluster;

export async function startPrivateCluster(): Promise<PrivateCluster> {
  const cluster = await startPostgresCluster({ maxConnections: 50 });
  // However jest ends this worker, the cluster must not outlive it.
  process.once('exit', () => cluster.stopSync());
  return cluster;
}
