// The scale scenario (`npm run bench -- --scale [--scale-secrets N]`, default 1,000,000; also
// COFFER_BENCH_SCALE_SECRETS): does Coffer stay as fast with N secrets as with 1,000?
//
// One durable PostgreSQL cluster, sized as production would size it (scale-pg.mjs: shared_buffers
// 25% of RAM, effective_cache_size 75%; the report says which settings ran), with two databases
// and a Coffer server process on each: one holding 1,000 secrets, one holding N. In each, 100
// namespaces (scale-00 … scale-99) are made through the API, and in the target namespace
// (scale-50) a folder of 100 secrets of ~500 B, `zz-late/`, which sorts after everything else
// there: a folder query that walks the namespace instead of a range finds it last. The rest are
// filler secrets app/f…/s… spread evenly over the 100 namespaces, seeded straight into the
// database like the rewrap scenario does (seed.mjs: real envelopes from the server's own keyring,
// rows through the storage layer) by another Coffer instance in this process, unsealed with the
// same share and stopped before anything is measured. After seeding: VACUUM (ANALYZE), a
// CHECKPOINT and pg_prewarm of the secret tables (the steady state of a running deployment).
//
// Then rounds (SCALE_ROUNDS) at a moderate fixed concurrency per server (--scale-connections,
// default 2: latency, not a saturated machine's queue): each measurement at 1k and at N at the
// same time, side by side, so that drift and the other work on a shared machine hit both sizes
// alike (COFFER_BENCH_SCALE_PAIRING=sequential: back to back, alternating which goes first).
// Reported: medians over the rounds and the median of the rounds' paired N/1k ratios. Requests use
// AppRole machine tokens (read/list policy; write policy for the writes). Measured each round: a
// read of one secret (served from the secret cache once warm), reads of a hot set (the same 900
// secrets at both sizes, spread over all namespaces: a working set the secret cache holds),
// reads of random secrets out of all of them (cache hits at 1k, mostly misses once N outgrows
// the cache), the same with ?version=1 (the database path at both sizes), the bulk read and the
// list of the late folder, and writes; then each server's RSS, the tables' sizes and their
// buffer hit ratios over the rounds. COFFER_BENCH_SCALE_EXPLAIN=1 adds the plans of a read and
// of the bulk page.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BenchError, info, median, requireFromServer } from '../common.mjs';
import { measure } from '../load.mjs';
import { fmtInt } from '../report.mjs';
import { api, createBenchDatabase, startCoffer, startPostgres } from '../servers.mjs';
import { session, stopChild, stopPostgres } from '../session.mjs';
import { BULK_SECRETS, checkBulk, getRequest, machineToken, putMany, readRules, value500, writeRules } from './durable.mjs';
import { measureWrites } from './http.mjs';
import { describeFacts, pgFacts, prewarm, resetStats, scaleSettings } from './scale-pg.mjs';
import { seedSecrets } from './seed.mjs';

export const SCALE_NAMESPACES = 100;
export const SCALE_SMALL = 1000;
export const SCALE_ROUNDS = 5;
/** Secrets per namespace in the hot set: j < HOT_PER_NAMESPACE, present at both sizes (9 × 100 = 900). */
const HOT_PER_NAMESPACE = 9;
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
  } finally {
    await client.end();
  }
}


/** Medians over the rounds of one measurement; errors and problems summed over all of them. */
function combine(runs) {
  const m = (key) => median(runs.map((r) => r[key]));
  return {
    rounds: runs.length,
    rps: m('rps'),
    p50: m('p50'),
    p90: m('p90'),
    p99: m('p99'),
    serverCpuMsPerRequest: m('serverCpuMsPerRequest'),
    dbCpuMsPerRequest: m('dbCpuMsPerRequest'),
    p50s: runs.map((r) => r.p50),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    warmup: { errors: runs.reduce((n, r) => n + r.warmup.errors, 0), non2xx: runs.reduce((n, r) => n + r.warmup.non2xx, 0) },
    problems: runs.flatMap((r) => r.problems ?? []),
    serverLogTail: runs.map((r) => r.serverLogTail).find(Boolean),
  };
}

export const MEASUREMENTS = ['read', 'readHot', 'readRandom', 'readRandomDb', 'bulk', 'list', 'write'];

/** What each measurement requests of one side (server and tokens at one size). */
function requestsOf(side) {
  const { total, server, tokens } = side;
  // Random secrets across every namespace: autocannon picks a path per request, j below `limit(k)`.
  // `?version=1` (every filler's only version) always takes the database path, never the secret
  // cache: the like-for-like figure at both sizes, where the plain random read is mostly cache
  // hits at 1k and mostly misses at N.
  const randomRead = (limit, query) => ({
    url: server.base,
    method: 'GET',
    headers: { authorization: `Bearer ${tokens.read}` },
    requests: [
      {
        setupRequest: (req) => {
          const k = Math.floor(Math.random() * SCALE_NAMESPACES);
          const j = Math.floor(Math.random() * limit(k));
          return { ...req, path: `/v1/secrets/${nsName(k)}/${fillerPath(j)}${query}` };
        },
      },
    ],
  });
  const all = (k) => fillersIn(k, total);
  const hot = (k) => Math.min(HOT_PER_NAMESPACE, fillersIn(k, SCALE_SMALL));
  return {
    read: ['read one secret', getRequest(server, `/v1/secrets/${TARGET}/${LATE}s050`, tokens.read)],
    readHot: ['read a hot set of 900 secrets', randomRead(hot, '')],
    readRandom: ['read random secrets', randomRead(all, '')],
    readRandomDb: ['read random secrets ?version=1 (database path)', randomRead(all, '?version=1')],
    bulk: [`bulk read ${LATE}`, getRequest(server, `/v1/bulk/${TARGET}/${LATE}`, tokens.read)],
    list: [`list ${LATE}`, getRequest(server, `/v1/secrets/${TARGET}/${LATE}`, tokens.read)],
    write: ['write', null],
  };
}

/** GETs of `paths`, 8 at a time; any answer but 200 is a BenchError. */
async function getMany(base, token, paths) {
  let next = 0;
  const worker = async () => {
    while (next < paths.length) await api(base, 'GET', paths[next++], { token });
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

/** One measurement of one side in one round. */
async function measureOne(key, tag, round, side, opts) {
  const [what, request] = requestsOf(side)[key];
  const label = { label: `(s) ${what} @ ${tag}, round ${round}` };
  if (key === 'write') return measureWrites(label, side.server, opts, { token: side.tokens.write, path: `/v1/secrets/${TARGET}/zz-write/rotating-r${round}` });
  return measure(label, side.server, request, opts);
}

/** A database on the cluster with its own Coffer server, namespaces, late folder and tokens, seeded to `total`. */
async function prepareSide(name, databaseUrl, total, opts) {
  const server = await startCoffer(name, { COFFER_DATABASE_URL: databaseUrl, COFFER_LOGIN_RATE_PER_SECOND: '0' }, opts);
  const side = { server, databaseUrl, total, tokens: null, seedSeconds: 0 };
  for (let k = 0; k < SCALE_NAMESPACES; k++) {
    await api(server.base, 'POST', '/v1/namespaces', { token: server.token, body: { name: nsName(k) }, expect: [200, 201] });
  }
  const late = Array.from({ length: BULK_SECRETS }, (_, i) => `/v1/secrets/${TARGET}/${LATE}s${String(i).padStart(3, '0')}`);
  await putMany(server.base, server.token, late, () => ({ data: { value: value500() } }));
  side.tokens = {
    read: await machineToken(server, 'scale-read', readRules('scale-*')),
    write: await machineToken(server, 'scale-write', writeRules('scale-*')),
  };
  info(`scale: seeding ${fmtInt(total)} secrets into ${name}`);
  side.seedSeconds = await seedFillers(opts, databaseUrl, server.share, BULK_SECRETS, total);
  info(`scale: ${fmtInt(total)} secrets seeded into ${name} in ${side.seedSeconds.toFixed(1)} s (${fmtInt((total - BULK_SECRETS) / side.seedSeconds)}/s)`);
  return side;
}

/** The scale scenario; returns { secrets, namespaces, rounds, connections, seedSeconds, small, large, pg, pgVersion }. */
export async function runScale(opts) {
  const N = opts.scaleSecrets;
  if (N <= SCALE_SMALL) throw new BenchError(`--scale-secrets must be more than ${SCALE_SMALL}`);
  const sizing = scaleSettings();
  const pairing = process.env.COFFER_BENCH_SCALE_PAIRING ?? 'simultaneous';
  if (!['simultaneous', 'sequential'].includes(pairing)) throw new BenchError(`COFFER_BENCH_SCALE_PAIRING must be simultaneous or sequential, got "${pairing}"`);
  const pg = await startPostgres({ durable: true, settings: sizing.settings });
  const largeTag = N >= 1_000_000 ? `${N / 1_000_000}M` : `${N / 1000}k`;
  const t0 = performance.now();
  try {
    const small = await prepareSide('postgres-scale-1k', pg.url, SCALE_SMALL, opts);
    let large = null;
    try {
      large = await prepareSide(`postgres-scale-${largeTag}`, await createBenchDatabase('coffer_scale_large'), N, opts);
      const facts0 = await pgFacts(large.databaseUrl);
      info(`scale: PostgreSQL ${pg.version}, durable, ${sizing.source}: ${JSON.stringify(facts0.settings)}`);
      for (const side of [small, large]) {
        const mib = await prewarm(side.databaseUrl);
        if (mib !== null) info(`scale: prewarmed ${mib} MiB of the secret tables and indexes (${side === small ? '1k' : largeTag})`);
        await resetStats(side.databaseUrl);
      }
      const prepareSeconds = (performance.now() - t0) / 1000;
      const scaleOpts = { ...opts, connections: opts.scaleConnections };
      for (const side of [small, large]) {
        await checkBulk(side.server, `/v1/bulk/${TARGET}/${LATE}`, side.tokens.read, BULK_SECRETS);
        // The hot set is read once before the rounds, so that its measurement is of a warm cache
        // at both sizes (a 1 s warm-up reads only part of 900 secrets at this concurrency).
        const hotPaths = [];
        for (let k = 0; k < SCALE_NAMESPACES; k++) for (let j = 0; j < Math.min(HOT_PER_NAMESPACE, fillersIn(k, SCALE_SMALL)); j++) hotPaths.push(`/v1/secrets/${nsName(k)}/${fillerPath(j)}`);
        await getMany(side.server.base, side.tokens.read, hotPaths);
      }
      // Each measurement at both sizes at the same time (the two servers and their loads side by
      // side, so the machine's drift and the other work on it hit both alike), or with
      // COFFER_BENCH_SCALE_PAIRING=sequential back to back in alternating order (1k first, then N
      // first, ...), each alone on the machine but seconds apart.
      const runs = { small: [], large: [] };
      const pairRatios = Object.fromEntries(MEASUREMENTS.map((key) => [key, []]));
      const simultaneous = pairing === 'simultaneous';
      for (let round = 1; round <= SCALE_ROUNDS; round++) {
        const one = { small: {}, large: {} };
        for (const [i, key] of MEASUREMENTS.entries()) {
          const run = (which) => measureOne(key, which === 'small' ? '1k' : largeTag, round, which === 'small' ? small : large, scaleOpts);
          if (simultaneous) {
            [one.small[key], one.large[key]] = await Promise.all([run('small'), run('large')]);
            // The cluster's CPU over both loads: not one side's cost.
            one.small[key].dbCpuMsPerRequest = one.large[key].dbCpuMsPerRequest = null;
          } else {
            for (const which of (round + i) % 2 ? ['small', 'large'] : ['large', 'small']) one[which][key] = await run(which);
          }
          pairRatios[key].push(one.large[key].p50 / one.small[key].p50);
        }
        runs.small.push(one.small);
        runs.large.push(one.large);
      }
      const result = { secrets: N, namespaces: SCALE_NAMESPACES, rounds: SCALE_ROUNDS, pairing, connections: opts.scaleConnections, seedSeconds: large.seedSeconds, prepareSeconds, pgVersion: pg.version };
      result.pg = { source: sizing.source, settings: facts0.settings };
      // The median of each round's N/1k p50 ratio: the paired reading, steadier than a ratio of medians.
      result.pairedP50Ratio = Object.fromEntries(MEASUREMENTS.map((key) => [key, median(pairRatios[key])]));
      for (const [which, side] of [['small', small], ['large', large]]) {
        const agg = Object.fromEntries(MEASUREMENTS.map((key) => [key, combine(runs[which].map((r) => r[key]))]));
        agg.total = side.total;
        agg.rssMiB = rssMiB(side.server.child.child.pid);
        agg.pg = await pgFacts(side.databaseUrl);
        info(`  ${describeFacts(which === 'small' ? '1k' : largeTag, agg.pg)}; server RSS ${agg.rssMiB ?? '?'} MiB`);
        if (process.env.COFFER_BENCH_SCALE_EXPLAIN === '1') await explainAt(which === 'small' ? '1k' : largeTag, side.total, side.databaseUrl);
        result[which] = agg;
      }
      result.seconds = (performance.now() - t0) / 1000;
      return result;
    } finally {
      if (large) await stopChild(large.server.child);
      await stopChild(small.server.child);
    }
  } finally {
    const c = session.cluster;
    session.cluster = null;
    if (c) await stopPostgres(c);
  }
}
