// PostgreSQL for the scale scenario as a production deployment would size it, and what it saw.
//
// PostgreSQL's stock shared_buffers (128 MB) is a floor meant to start anywhere, not a setting
// to run a million secrets on: its documentation advises about 25% of the machine's memory for
// a dedicated server, and effective_cache_size (what the planner may assume the OS caches as
// well) at half or more of it. The scenario starts its cluster that way and says so in its
// output; COFFER_BENCH_SCALE_PG overrides (`name=value` pairs separated by spaces, or `stock`
// for PostgreSQL's defaults, to reproduce an undersized cluster).
import os from 'node:os';
import { BenchError, info, requireFromServer } from '../common.mjs';

const MiB = 1024 * 1024;

/** The settings the scale cluster starts with: 25% of RAM for shared_buffers, 75% as effective_cache_size. */
export function scaleSettings(env = process.env) {
  const raw = env.COFFER_BENCH_SCALE_PG?.trim();
  if (raw === 'stock') return { settings: {}, source: 'PostgreSQL defaults (COFFER_BENCH_SCALE_PG=stock)' };
  if (raw) {
    const settings = {};
    for (const pair of raw.split(/\s+/)) {
      const m = /^([a-z_]+)=([A-Za-z0-9._-]+)$/.exec(pair);
      if (!m) throw new BenchError(`COFFER_BENCH_SCALE_PG: expected name=value pairs or "stock", got "${pair}"`);
      settings[m[1]] = m[2];
    }
    return { settings, source: 'COFFER_BENCH_SCALE_PG' };
  }
  const ramMiB = Math.floor(os.totalmem() / MiB);
  return {
    settings: { shared_buffers: `${Math.floor(ramMiB / 4)}MB`, effective_cache_size: `${Math.floor((ramMiB * 3) / 4)}MB` },
    source: `sized for this machine's ${(ramMiB / 1024).toFixed(1)} GiB RAM (25% / 75%, as PostgreSQL's docs advise)`,
  };
}

const TABLES = ['secrets', 'secret_versions'];

async function withClient(url, fn) {
  const pg = requireFromServer('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Loads the secret tables and their indexes into shared_buffers (pg_prewarm, a contrib module;
 * skipped with a note when it is not installed): the steady state of a server that has run for
 * a while, instead of the first minutes after a bulk load. Returns the MiB loaded, or null.
 */
export async function prewarm(url) {
  return withClient(url, async (client) => {
    try {
      await client.query('create extension if not exists pg_prewarm');
    } catch (err) {
      info(`  pg_prewarm is not available (${err.message}); measuring without prewarming`);
      return null;
    }
    const rels = await client.query(
      `select c.oid::regclass::text as rel from pg_class c where c.oid in (select unnest(array[${TABLES.map((t) => `'${t}'::regclass`).join(', ')}])
       union select indexrelid from pg_index where indrelid in (${TABLES.map((t) => `'${t}'::regclass`).join(', ')}))`,
    );
    let blocks = 0;
    for (const { rel } of rels.rows) blocks += Number((await client.query('select pg_prewarm($1::regclass) as n', [rel])).rows[0].n);
    return Math.round((blocks * 8192) / MiB);
  });
}

/** Zeroes the statistics counters (hit ratios) of one database, so that what follows is measured alone. */
export async function resetStats(url) {
  await withClient(url, (client) => client.query('select pg_stat_reset()'));
}

/**
 * The settings in force, the secret tables' and indexes' sizes, and their buffer hit ratios since
 * the last resetStats (the measured rounds): where a read's pages came from.
 */
export async function pgFacts(url) {
  return withClient(url, async (client) => {
    const settings = (await client.query(`select name, setting, unit from pg_settings where name in ('shared_buffers', 'effective_cache_size', 'work_mem', 'random_page_cost')`)).rows;
    const shown = Object.fromEntries(settings.map((r) => [r.name, r.unit === '8kB' ? `${Math.round((Number(r.setting) * 8) / 1024)}MB` : r.unit === 'kB' ? `${Math.round(Number(r.setting) / 1024)}MB` : r.setting]));
    const sizes = (await client.query(
      `select relname, pg_relation_size(relid) as heap, pg_indexes_size(relid) as idx from pg_statio_user_tables where relname = any($1)`, [TABLES],
    )).rows.map((r) => ({ table: r.relname, heapMiB: Math.round(Number(r.heap) / MiB), indexMiB: Math.round(Number(r.idx) / MiB) }));
    const hit = (await client.query(
      `select sum(heap_blks_hit)::float / nullif(sum(heap_blks_hit + heap_blks_read), 0) as heap,
              sum(idx_blks_hit)::float / nullif(sum(idx_blks_hit + idx_blks_read), 0) as idx,
              sum(heap_blks_read + idx_blks_read) as misses
         from pg_statio_user_tables where relname = any($1)`, [TABLES],
    )).rows[0];
    return { settings: shown, sizes, hitRatio: { heap: hit.heap, index: hit.idx, blocksRead: Number(hit.misses ?? 0) } };
  });
}

/** One line for the log and the report: settings, sizes, hit ratios. */
export function describeFacts(tag, f) {
  const ratio = (x) => (x === null || x === undefined ? 'n/a' : x.toFixed(4));
  const sizes = f.sizes.map((s) => `${s.table} ${s.heapMiB} MiB + ${s.indexMiB} MiB indexes`).join(', ');
  return `${tag}: ${sizes}; buffer hit ratio in the rounds: heap ${ratio(f.hitRatio.heap)}, index ${ratio(f.hitRatio.index)} (${f.hitRatio.blocksRead} blocks read from outside shared_buffers)`;
}
