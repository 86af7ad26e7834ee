#!/usr/bin/env node
// What PostgreSQL spends per request of a load, statement by statement: one Coffer server on a
// throwaway cluster with pg_stat_statements preloaded, a warm-up, then a measured window of
// scenario c1 (PUT of one secret, as ab.mjs) and/or b1 (GET of one secret). Per request: commits,
// statements, WAL bytes/records/full-page images (pg_stat_wal), the CPU of ALL the cluster's
// processes (postmaster, backends, walwriter, checkpointer, autovacuum: /proc, including children
// that exited), the Coffer server's CPU, tuples inserted/updated(HOT)/deleted per table, and a
// table per statement: calls, execution µs, rows, shared blocks dirtied, WAL bytes.
// With --proxy the server talks to PostgreSQL through a counting TCP proxy in this process:
// round trips (client sends after an answer, per connection) and protocol messages per request
// (the proxy's CPU then competes with the rest: read its CPU figures as indicative only).
//
//   node scripts/bench/pgcost.mjs [--server server/dist/main.js] [--durable] [--approle]
//     [--scenarios c1,b1] [--seconds 8] [--warmup 4] [--connections 32] [--proxy] [--explain] [--perf FILE] [--top 15]
// --perf FILE: `perf record -g` of the cluster's processes during each measured window (FILE.<scenario>),
// summarised by symbol at the end (needs perf and the right to trace them).
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_SERVER_MAIN, requireFromServer, sleep } from './common.mjs';
import { runLoad } from './load.mjs';
import { READ_PATH, WRITE_PATH } from './options.mjs';
import { api, startCoffer, startPostgres } from './servers.mjs';
import { cleanup, installCleanupHandlers, session } from './session.mjs';
import { machineToken, writeRules } from './scenarios/durable.mjs';
import { writeRequest } from './scenarios/http.mjs';

const { values } = parseArgs({
  options: {
    server: { type: 'string', default: DEFAULT_SERVER_MAIN }, durable: { type: 'boolean', default: false },
    approle: { type: 'boolean', default: false }, scenarios: { type: 'string', default: 'c1,b1' },
    seconds: { type: 'string', default: '8' }, warmup: { type: 'string', default: '4' },
    connections: { type: 'string', default: '32' }, proxy: { type: 'boolean', default: false }, explain: { type: 'boolean', default: false }, perf: { type: 'string' }, top: { type: 'string', default: '15' },
  },
});
const seconds = Number(values.seconds), warmup = Number(values.warmup), connections = Number(values.connections);
const scenarios = values.scenarios.split(',').map((s) => s.trim()).filter(Boolean);
for (const id of scenarios) if (!['b1', 'c1'].includes(id)) throw new Error(`unknown scenario ${id} (b1, c1)`);

const statFields = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return f.slice(f.lastIndexOf(')') + 2).split(' '); // [0] is field 3 (state)
};
/** A cluster process's role from its title ("postgres: walwriter", "postgres: coffer db 127.0.0.1(…) idle"). */
function role(pid) {
  const title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').replace(/^postgres:\s*/, '');
  if (/^(walwriter|checkpointer|background writer|autovacuum|logical replication|archiver|stats)/.test(title)) return title.split(' ').slice(0, 2).join(' ').replace(/ (launcher|worker)$/, '');
  return 'backends';
}
/** CPU ms of the cluster by role: the postmaster (own + exited children's) plus its live children. */
function clusterCpuMs(postmaster) {
  const pm = statFields(postmaster);
  const byRole = { postmaster: (Number(pm[11]) + Number(pm[12]) + Number(pm[13]) + Number(pm[14])) * 10 };
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const x = statFields(d);
      if (Number(x[1]) !== postmaster) continue;
      const r = role(d);
      byRole[r] = (byRole[r] ?? 0) + (Number(x[11]) + Number(x[12])) * 10;
    } catch { /* gone */ }
  }
  return byRole;
}
const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
const procCpuMs = (pid) => { const x = statFields(pid); return (Number(x[11]) + Number(x[12])) * 10; };

/** A TCP proxy counting, per connection, round trips and frontend messages by type. */
function countingProxy(target) {
  const counts = { roundTrips: 0, messages: {} };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    let answered = true; // the next client bytes after an answer start a round trip
    let pending = Buffer.alloc(0);
    let startup = true;
    client.on('data', (chunk) => {
      if (answered) { counts.roundTrips++; answered = false; }
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (startup) { // untyped: length first
          if (pending.length < 4) break;
          const len = pending.readInt32BE(0);
          if (pending.length < len) break;
          pending = pending.subarray(len);
          startup = false;
          continue;
        }
        if (pending.length < 5) break;
        const len = pending.readInt32BE(1);
        if (pending.length < 1 + len) break;
        const type = String.fromCharCode(pending[0]);
        counts.messages[type] = (counts.messages[type] ?? 0) + 1;
        pending = pending.subarray(1 + len);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => { answered = true; client.write(chunk); });
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('error', end); upstream.on('error', end); client.on('close', end); upstream.on('close', end);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, counts, server })));
}

async function main() {
  installCleanupHandlers();
  const pg = requireFromServer('pg');
  const cluster = await startPostgres({
    durable: values.durable,
    settings: {
      shared_preload_libraries: values.explain ? 'pg_stat_statements,auto_explain' : 'pg_stat_statements',
      'pg_stat_statements.track': 'all', 'pg_stat_statements.max': '2000', 'pg_stat_statements.track_planning': 'on',
      // --explain: a sample of the plans (with buffers) in the cluster's log, printed at the end.
      ...(values.explain ? { 'auto_explain.log_min_duration': '0', 'auto_explain.log_analyze': 'on', 'auto_explain.log_buffers': 'on', 'auto_explain.sample_rate': '0.05', 'auto_explain.log_timing': 'off' } : {}),
    },
  });
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query('create extension if not exists pg_stat_statements');
  const postmaster = Number(readFileSync(path.join(session.cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let url = cluster.url;
  let proxy = null;
  if (values.proxy) {
    const u = new URL(cluster.url);
    proxy = await countingProxy({ host: u.hostname, port: Number(u.port) });
    u.port = String(proxy.port);
    url = u.toString();
  }
  const server = await startCoffer('pgcost', { COFFER_DATABASE_URL: url, COFFER_LOGIN_RATE_PER_SECOND: '0' }, { serverMain: path.resolve(values.server) });
  const writeToken = values.approle ? await machineToken(server, 'bench-write', writeRules('bench')) : server.token;
  const requests = {
    c1: writeRequest(server, { token: writeToken }),
    b1: { url: server.base + READ_PATH, method: 'GET', headers: { authorization: `Bearer ${server.token}` } },
  };
  console.log(`PostgreSQL ${cluster.version}${values.durable ? ' durable' : ' non-durable'}; server ${values.server}; ${connections} connections${values.proxy ? '; via counting proxy' : ''}`);
  const q = async (text) => (await admin.query(text)).rows;
  const snapshot = async () => ({
    cpu: clusterCpuMs(postmaster),
    coffer: procCpuMs(server.child.child.pid),
    lsn: (await q('select pg_current_wal_lsn()::text as l'))[0].l,
    db: (await q("select xact_commit::bigint as c, xact_rollback::bigint as r from pg_stat_database where datname = current_database()"))[0],
    tables: Object.fromEntries((await q('select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, seq_scan, seq_tup_read, idx_scan, n_dead_tup, pg_relation_size(relid) as bytes, autovacuum_count from pg_stat_user_tables')).map((r) => [r.relname, r])),
    rt: proxy ? { roundTrips: proxy.counts.roundTrips, messages: { ...proxy.counts.messages } } : null,
  });
  for (const id of scenarios) {
    await runLoad(requests[id], warmup, connections);
    await sleep(500);
    await q("select pg_stat_statements_reset(), pg_stat_reset_shared('wal')");
    await sleep(600); // pg_stat_database counters are flushed at most once a second or so
    const before = await snapshot();
    let perf = null;
    if (values.perf) {
      const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => { try { return Number(statFields(d)[1]) === postmaster; } catch { return false; } });
      perf = spawn('perf', ['record', '-q', '-F', '499', '-g', '-o', `${values.perf}.${id}`, '-p', [postmaster, ...pids].join(',')], { stdio: 'ignore' });
    }
    const r = await runLoad(requests[id], seconds, connections);
    if (perf) { perf.kill('SIGINT'); await new Promise((res) => perf.on('exit', res)); }
    if (r.errors + r.non2xx > 0) throw new Error(`${id}: ${r.errors} errors, ${r.non2xx} non-2xx`);
    await sleep(1500); // the audit group commits that follow the writes, and the stats flush
    const after = await snapshot();
    const n = r.requests;
    const lsnBytes = Number((await q(`select pg_wal_lsn_diff('${after.lsn}', '${before.lsn}')::bigint as b`))[0].b);
    const wal = (await q('select wal_records::bigint as rec, wal_fpi::bigint as fpi, wal_bytes::bigint as bytes, wal_write::bigint as writes, wal_sync::bigint as syncs from pg_stat_wal'))[0];
    const per = (x) => Number(x) / n;
    console.log(`\n== ${id}: ${n} requests, ${Math.round(r.rps)} req/s, p99 ${r.p99.toFixed(1)} ms`);
    const roles = Object.keys(after.cpu).map((k) => `${k} ${(((after.cpu[k] ?? 0) - (before.cpu[k] ?? 0)) / n * 1000).toFixed(1)}`).join(', ');
    console.log(`per request: PostgreSQL CPU ${((sum(after.cpu) - sum(before.cpu)) / n * 1000).toFixed(1)} µs (all cluster processes: ${roles}), Coffer CPU ${((after.coffer - before.coffer) / n * 1000).toFixed(1)} µs`);
    console.log(`per request: commits ${per(after.db.c - before.db.c).toFixed(3)}, rollbacks ${per(after.db.r - before.db.r).toFixed(3)}, ` +
      `WAL ${per(lsnBytes).toFixed(0)} B (lsn), ${per(wal.bytes).toFixed(0)} B / ${per(wal.rec).toFixed(2)} records / ${per(wal.fpi).toFixed(3)} FPI (pg_stat_wal), wal writes ${per(wal.writes).toFixed(3)}, syncs ${per(wal.syncs).toFixed(3)}`);
    if (after.rt) {
      const msgs = Object.entries(after.rt.messages).map(([t, c]) => `${t} ${per(c - (before.rt.messages[t] ?? 0)).toFixed(2)}`).join(', ');
      console.log(`per request: round trips ${per(after.rt.roundTrips - before.rt.roundTrips).toFixed(3)}; frontend messages ${msgs}`);
    }
    console.log('per request: tuples ins / upd (hot) / del, seq scans (tuples read), index scans; at the end: dead tuples, heap size, autovacuums in the window');
    for (const [name, t] of Object.entries(after.tables)) {
      const b = before.tables[name] ?? { n_tup_ins: 0, n_tup_upd: 0, n_tup_hot_upd: 0, n_tup_del: 0, seq_scan: 0, seq_tup_read: 0, idx_scan: 0, autovacuum_count: 0 };
      const d = (k) => per(Number(t[k]) - Number(b[k]));
      if (d('n_tup_ins') + d('n_tup_upd') + d('n_tup_del') === 0) continue;
      console.log(`  ${name.padEnd(22)} ${d('n_tup_ins').toFixed(3)} / ${d('n_tup_upd').toFixed(3)} (${d('n_tup_hot_upd').toFixed(3)}) / ${d('n_tup_del').toFixed(3)}, ` +
        `seq ${d('seq_scan').toFixed(3)} (${d('seq_tup_read').toFixed(1)}), idx ${d('idx_scan').toFixed(3)}; dead ${t.n_dead_tup}, ${(Number(t.bytes) / 1024).toFixed(0)} KiB, av ${Number(t.autovacuum_count) - Number(b.autovacuum_count ?? 0)}`);
    }
    const rows = await q(`select query, calls::bigint as calls, total_exec_time + total_plan_time as ms, rows::bigint as rows, shared_blks_hit::bigint as hit, total_plan_time as plan, plans::bigint as plans,
        shared_blks_dirtied::bigint as dirtied, wal_bytes::bigint as wal, wal_records::bigint as walrec, wal_fpi::bigint as fpi
      from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database()) order by total_exec_time desc`);
    const total = rows.reduce((s, x) => s + x.ms, 0);
    console.log(`statements per request ${per(rows.reduce((s, x) => s + Number(x.calls), 0)).toFixed(2)}, execution ${(total / n * 1000).toFixed(1)} µs per request. Top:`);
    console.log('  calls/req   µs/req (plan µs, plans)  rows/call  blks hit/req  dirtied/req  WAL B/req  WAL rec/req  statement');
    if (perf) {
      const report = spawnSync('perf', ['report', '-i', `${values.perf}.${id}`, '--no-children', '--sort', 'symbol', '--stdio', '-g', 'none', '--percent-limit', '1'], { encoding: 'utf8' });
      console.log(`perf, self time by symbol (>= 1%):\n${report.stdout.split('\n').filter((l) => /%/.test(l) && !l.startsWith('#')).slice(0, 40).join('\n')}`);
    }
    for (const x of rows.slice(0, Number(values.top))) {
      const text = x.query.replace(/\s+/g, ' ').slice(0, 150);
      console.log(`  ${per(x.calls).toFixed(3).padStart(9)} ${(x.ms / n * 1000).toFixed(1).padStart(8)} (${(x.plan / n * 1000).toFixed(1)}, ${per(x.plans).toFixed(3)}) ${(Number(x.rows) / Number(x.calls)).toFixed(2).padStart(10)} ` +
        `${per(x.hit).toFixed(2).padStart(13)} ${per(x.dirtied).toFixed(3).padStart(12)} ${per(x.wal).toFixed(0).padStart(10)} ${per(x.walrec).toFixed(2).padStart(12)}  ${text}`);
    }
  }
  await admin.end();
  proxy?.server.close();
  if (values.explain) {
    const log = readFileSync(path.join(session.cluster.dataDir, 'postgres.log'), 'utf8');
    const plans = log.split(/\n(?=\S)/).filter((e) => e.includes('Query Text:') && /coffer:/.test(e));
    // Per statement, the sampled plan with the most shared buffers hit.
    const hits = (plan) => Math.max(0, ...[...plan.matchAll(/shared hit=(\d+)/g)].map((m) => Number(m[1])));
    const worst = new Map();
    for (const plan of plans) {
      const key = plan.slice(plan.indexOf('Query Text:'), plan.indexOf('Query Text:') + 160);
      if (!worst.has(key) || hits(plan) > hits(worst.get(key))) worst.set(key, plan);
    }
    for (const plan of worst.values()) console.log(`\n${plan.replace(/^.*?duration:/, 'duration:')}`);
  }
}
main().then(() => cleanup()).then(() => process.exit(0), (err) => { console.error(err); cleanup().finally(() => process.exit(1)); });
