// The scale scenario (`npm run bench -- --scale [--scale-secrets N]`, default 1,000,000; also
// COFFER_BENCH_SCALE_SECRETS): does Coffer stay as fast with N secrets as with 1,000?
//
// One durable PostgreSQL cluster and one Coffer server process. 100 namespaces (scale-00 …
// scale-99) are made through the API, and in the target namespace (scale-50) a folder of 100
// secrets of ~500 B, `zz-late/`, which sorts after everything else there: a folder query that
// walks the namespace instead of a range finds it last. The rest are filler secrets app/f…/s…
// spread evenly over the 100 namespaces, seeded straight into the database like the rewrap
// scenario does (seed.mjs: real envelopes from the server's own keyring, rows through the storage
// layer) by a second Coffer instance in this process, unsealed with the same share and stopped
// before anything is measured. First 1,000 secrets in all, measured; then filled up to N,
// measured again on the same server process. Requests use AppRole machine tokens (read/list
// policy; write policy for the writes). Measured each time: a read of one secret (served from the
// secret cache once warm), reads of random secrets across all namespaces (cache hits at 1k,
// mostly misses once N outgrows the cache), the same with ?version=1 (the database path at both
// sizes), the bulk read and the list of the late folder, and writes; and the server's RSS
// afterwards. COFFER_BENCH_SCALE_EXPLAIN=1 adds the plans of a read and of the bulk page.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BenchError, info, requireFromServer } from '../common.mjs';
import { measure } from '../load.mjs';
import { fmtInt } from '../report.mjs';
import { api, startCoffer, startPostgres } from '../servers.mjs';
import { session, stopChild, stopPostgres } from '../session.mjs';
import { BULK_SECRETS, checkBulk, getRequest, machineToken, putMany, readRules, value500, writeRules } from './durable.mjs';
import { measureWrites } from './http.mjs';
import { seedSecrets } from './seed.mjs';

export const SCALE_NAMESPACES = 100;
export const SCALE_SMALL = 1000;
const TARGET = 'scale-50';
const LATE = 'zz-late/';
const nsName = (k) => `scale-${String(k).padStart(2, '0')}`;
const fillerPath = (j) => `app/f${String(Math.floor(j / 100)).padStart(5, '0')}/s${String(j % 100).padStart(2, '0')}`;
const FILLER_VALUE = { value: 'x'.repeat(500) }; // sealed like any other; its content does not matter

/** Filler secrets namespace `k` holds when `total` secrets exist in all (the late folder counts). */
function fillersIn(k, total) {
  const fillers = total - BULK_SECRETS;
  return Math.floor(fillers / SCALE_NAMESPACES) + (k < fillers % SCALE_NAMESPACES ? 1 : 0);
}

/** Resident set size of a process in MiB (Linux /proc; null elsewhere). */
function rssMiB(pid) {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    return Number.isFinite(kb) ? Math.round(kb / 1024) : null;
  } catch {
    return null;
  }
}

/** Seeds filler secrets so that namespace k holds fillersIn(k, to), given it holds fillersIn(k, from). */
async function seedFillers(opts, databaseUrl, share, from, to) {
  const dist = (file) => pathToFileURL(path.join(path.dirname(opts.serverMain), file)).href;
  const { loadConfig } = await import(dist('config.js'));
  const { createLogger } = await import(dist('log.js'));
  const { startServer } = await import(dist('server.js'));
  const config = loadConfig({}, { host: '127.0.0.1', port: 0, logLevel: 'warn', kekRunJobs: false, databaseUrl });
  const seeder = await startServer(config, createLogger('warn'));
  try {
    const status = await seeder.core.unseal(share);
    if (status.sealed !== false) throw new BenchError('scale: the seeding instance did not unseal with the share');
    const services = seeder.core.services();
    const t0 = performance.now();
    // A few namespaces at a time, so that sealing in this process overlaps PostgreSQL's inserts.
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < SCALE_NAMESPACES) {
        if (session.shuttingDown) throw new Error('interrupted');
        const k = next++;
        const have = fillersIn(k, from);
        const count = fillersIn(k, to) - have;
        if (count > 0) {
          const ns = await services.namespaces.resolve(nsName(k));
          await seedSecrets({ storage: seeder.storage, keyring: services.keyring, namespaceId: ns.id, count, pathOf: (i) => fillerPath(have + i), valueOf: () => FILLER_VALUE });
        }
        if (++done % 10 === 0) info(`  seeded ${done} of ${SCALE_NAMESPACES} namespaces (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    // Measure the steady state, not the aftermath of a bulk load: the planner's guesses before
    // statistics (autovacuum would analyze these tables later, in the middle of a measurement),
    // the first reads of each new row setting its hint bits, and the checkpointer writing the
    // load's dirty pages while every audited request waits for a WAL flush of its own.
    const pg = requireFromServer('pg');
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query('vacuum (analyze) secrets, secret_versions');
      await client.query('checkpoint');
    } finally {
      await client.end();
    }
    return (performance.now() - t0) / 1000;
  } finally {
    await seeder.stop();
  }
}

/**
 * With COFFER_BENCH_SCALE_EXPLAIN=1: the plans (EXPLAIN ANALYZE, BUFFERS) of a random secret's read
 * and of the late folder's bulk page, as the server's repositories shape them, printed to stderr.
 */
async function explainAt(tag, total, databaseUrl) {
  const pg = requireFromServer('pg');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const k = Math.floor(Math.random() * SCALE_NAMESPACES);
    const j = Math.floor(Math.random() * fillersIn(k, total));
    const cols = 'v.version, v.type, v.metadata, v.kek_version, v.wrapped_dek, v.ciphertext, v.created_at';
    const read =
      `select n.id, n.deletion_date, s.id, ${cols}, v.deleted_at, v.destroyed_at from secrets s join namespaces n on n.id = s.namespace_id ` +
      `join secret_versions v on v.secret_id = s.id and v.version = s.current_version where n.name = $1 and s.path = $2`;
    const ns = (await client.query('select id from namespaces where name = $1', [TARGET])).rows[0].id;
    const bulk =
      `select s.id, s.path, ${cols} from secrets s join secret_versions v on v.secret_id = s.id and v.version = s.current_version ` +
      `where s.namespace_id = $1 and s.path >= $2 and s.path < $3 and s.path > '' and v.deleted_at is null and v.destroyed_at is null order by s.path limit 1001`;
    for (const [what, text, params] of [
      [`read ${nsName(k)}:${fillerPath(j)}`, read, [nsName(k), fillerPath(j)]],
      [`bulk page ${TARGET}:${LATE}`, bulk, [ns, LATE, LATE.slice(0, -1) + String.fromCharCode(LATE.charCodeAt(LATE.length - 1) + 1)]],
    ]) {
      const plan = await client.query(`explain (analyze, buffers) ${text}`, params);
      info(`  plan at ${tag}, ${what}:\n${plan.rows.map((r) => '    ' + r['QUERY PLAN']).join('\n')}`);
    }
    const hit = await client.query(`select sum(heap_blks_hit)::float / nullif(sum(heap_blks_hit + heap_blks_read), 0) as heap, sum(idx_blks_hit)::float / nullif(sum(idx_blks_hit + idx_blks_read), 0) as idx from pg_statio_user_tables where relname in ('secrets', 'secret_versions')`);
    const size = await client.query(`select pg_size_pretty(pg_total_relation_size('secret_versions')) as versions, pg_size_pretty(pg_total_relation_size('secrets')) as secrets, current_setting('shared_buffers') as shared_buffers`);
    info(`  buffer hit ratio at ${tag} (since start): heap ${hit.rows[0].heap?.toFixed(3)}, index ${hit.rows[0].idx?.toFixed(3)}; sizes ${JSON.stringify(size.rows[0])}`);
  } finally {
    await client.end();
  }
}

/** The measurements at one size; `tag` names them in the report. */
async function measureAt(tag, total, server, tokens, opts) {
  const label = (what) => ({ label: `(s) ${what} @ ${tag}` });
  const one = getRequest(server, `/v1/secrets/${TARGET}/${LATE}s050`, tokens.read);
  // Random secrets across every namespace (this size's fillers): autocannon picks a path per request.
  // `?version=1` (every filler's only version) always takes the database path, never the secret
  // cache: the like-for-like figure at both sizes, where the plain random read is mostly cache
  // hits at 1k and mostly misses at N.
  const randomRead = (query) => ({
    url: server.base,
    method: 'GET',
    headers: { authorization: `Bearer ${tokens.read}` },
    requests: [
      {
        setupRequest: (req) => {
          const k = Math.floor(Math.random() * SCALE_NAMESPACES);
          const j = Math.floor(Math.random() * fillersIn(k, total));
          return { ...req, path: `/v1/secrets/${nsName(k)}/${fillerPath(j)}${query}` };
        },
      },
    ],
  });
  const bulkPath = `/v1/bulk/${TARGET}/${LATE}`;
  await checkBulk(server, bulkPath, tokens.read, BULK_SECRETS);
  const out = { total };
  out.read = await measure(label('read one secret'), server, one, opts);
  out.readRandom = await measure(label('read random secrets'), server, randomRead(''), opts);
  out.readRandomDb = await measure(label('read random secrets ?version=1 (database path)'), server, randomRead('?version=1'), opts);
  out.bulk = await measure(label(`bulk read ${LATE}`), server, getRequest(server, bulkPath, tokens.read), opts);
  out.list = await measure(label(`list ${LATE}`), server, getRequest(server, `/v1/secrets/${TARGET}/${LATE}`, tokens.read), opts);
  out.write = await measureWrites(label('write'), server, opts, { token: tokens.write, path: `/v1/secrets/${TARGET}/zz-write/rotating-${tag}` });
  out.rssMiB = rssMiB(server.child.child.pid);
  if (process.env.COFFER_BENCH_SCALE_EXPLAIN === '1') await explainAt(tag, total, opts.databaseUrl);
  info(`  server RSS at ${tag}: ${out.rssMiB ?? '?'} MiB`);
  return out;
}

/** The scale scenario; returns { secrets, namespaces, seedSeconds, small, large, pgVersion }. */
export async function runScale(opts) {
  const N = opts.scaleSecrets;
  if (N <= SCALE_SMALL) throw new BenchError(`--scale-secrets must be more than ${SCALE_SMALL}`);
  const pg = await startPostgres({ durable: true });
  info(`scale: PostgreSQL ${pg.version}, durable; ${fmtInt(N)} secrets across ${SCALE_NAMESPACES} namespaces`);
  try {
    const server = await startCoffer('postgres-scale', { COFFER_DATABASE_URL: pg.url, COFFER_LOGIN_RATE_PER_SECOND: '0' }, opts);
    try {
      for (let k = 0; k < SCALE_NAMESPACES; k++) {
        await api(server.base, 'POST', '/v1/namespaces', { token: server.token, body: { name: nsName(k) }, expect: [200, 201] });
      }
      const late = Array.from({ length: BULK_SECRETS }, (_, i) => `/v1/secrets/${TARGET}/${LATE}s${String(i).padStart(3, '0')}`);
      await putMany(server.base, server.token, late, () => ({ data: { value: value500() } }));
      const tokens = {
        read: await machineToken(server, 'scale-read', readRules('scale-*')),
        write: await machineToken(server, 'scale-write', writeRules('scale-*')),
      };
      const seedSmall = await seedFillers(opts, pg.url, server.share, BULK_SECRETS, SCALE_SMALL);
      info(`scale: ${fmtInt(SCALE_SMALL)} secrets seeded (${seedSmall.toFixed(1)} s); measuring`);
      const scaleOpts = { ...opts, databaseUrl: pg.url };
      const small = await measureAt('1k', SCALE_SMALL, server, tokens, scaleOpts);
      info(`scale: seeding up to ${fmtInt(N)} secrets`);
      const seedSeconds = await seedFillers(opts, pg.url, server.share, SCALE_SMALL, N);
      info(`scale: ${fmtInt(N)} secrets seeded in ${seedSeconds.toFixed(1)} s (${fmtInt((N - SCALE_SMALL) / seedSeconds)}/s); measuring`);
      const large = await measureAt(N >= 1_000_000 ? `${N / 1_000_000}M` : `${N / 1000}k`, N, server, tokens, scaleOpts);
      return { secrets: N, namespaces: SCALE_NAMESPACES, seedSeconds, small, large, pgVersion: pg.version };
    } finally {
      await stopChild(server.child);
    }
  } finally {
    const c = session.cluster;
    session.cluster = null;
    if (c) await stopPostgres(c);
  }
}
