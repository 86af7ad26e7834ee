// scripts/lib/pg-cluster.mjs `settings`: the bench's scale scenario starts its cluster with
// production-sized memory settings through it, and its report prints them; a setting that
// silently did not reach the server would make that report (and the ratios) a lie.
import pg from 'pg';
import { startPostgresCluster, type PostgresCluster } from '#lib/pg-cluster.mjs';
import { describeIfPostgres } from '../helpers/env.js';

describeIfPostgres('pg-cluster settings', () => {
  let cluster: PostgresCluster | undefined;

  afterAll(async () => {
    await cluster?.stop();
  });

  it('passes extra settings to the server, after (and over) its own defaults', async () => {
    cluster = await startPostgresCluster({
      maxConnections: 20,
      durable: true,
      settings: { shared_buffers: '48MB', effective_cache_size: '96MB', max_connections: '25' },
    });
    process.once('exit', () => cluster?.stopSync());
    const client = new pg.Client({ connectionString: cluster.url });
    await client.connect();
    try {
      const show = async (name: string) => (await client.query(`select current_setting($1) as v`, [name])).rows[0].v as string;
      expect(await show('shared_buffers')).toBe('48MB');
      expect(await show('effective_cache_size')).toBe('96MB');
      expect(await show('max_connections')).toBe('25');
      expect(await show('fsync')).toBe('on');
    } finally {
      await client.end();
    }
  }, 120_000);
});
