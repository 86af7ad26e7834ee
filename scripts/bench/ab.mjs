#!/usr/bin/env node
// A/B(/C) on warm servers: two or three builds' servers (or one build under different node
// flags), each on its own database of one throwaway PostgreSQL, measured in alternating windows so
// that machine load drifts hit them alike. Per window: the loaded server's CPU per request (from
// /proc), req/s, p99, and its scavenges (prom-client's GC histogram, scraped around the window).
//
//   node scripts/bench/ab.mjs --a /work/main/server/dist/main.js --b server/dist/main.js \
//     [--c other/main.js] [--a-node-args="--max-semi-space-size=32"] [--b-node-args=...]  (with "=": the value starts with a dash) \
//     [--a-env "COFFER_AUDIT_SINKS=none"] [--b-env "K=V K=V"] [--c-env ...]  (one build under different settings) \
//     [--rounds 4] [--window 4] [--warmup 10] [--connections 16] [--durable] [--scenarios b1,b3,c1] \
//     [--cpu-prof DIR]
//
// Scenarios: b1 (root token), b3 (user token, policy evaluated); with --durable the cluster is
// durable (fsync, synchronous_commit) and b3's token is an AppRole one with the (p1) read/list
// policy, i.e. (p1); c1 (PUT of one secret, root token). The first windows after start are printed
// too (the warm-up curve). Per window also PostgreSQL's CPU per request (the whole cluster's: one
// server is loaded at a time). At the end: medians per variant and scenario, and each server's RSS.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { median } from './common.mjs';
import { postgresCpuBetween, postgresCpuByPid, runLoad } from './load.mjs';
import { READ_PATH } from './options.mjs';
import { api, createBenchDatabase, startCoffer, startPostgres } from './servers.mjs';
import { cleanup, installCleanupHandlers } from './session.mjs';
import { policyReadRequest } from './scenarios/identity.mjs';
import { machineToken, readRules } from './scenarios/durable.mjs';
import { writeRequest } from './scenarios/http.mjs';

const { values } = parseArgs({
  options: {
    a: { type: 'string' }, b: { type: 'string' }, c: { type: 'string' },
    'a-node-args': { type: 'string', default: '' }, 'b-node-args': { type: 'string', default: '' }, 'c-node-args': { type: 'string', default: '' },
    'a-env': { type: 'string', default: '' }, 'b-env': { type: 'string', default: '' }, 'c-env': { type: 'string', default: '' },
    rounds: { type: 'string', default: '4' }, window: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '10' }, connections: { type: 'string', default: '16' }, durable: { type: 'boolean', default: false },
    scenarios: { type: 'string', default: 'b1,b3' }, 'cpu-prof': { type: 'string' },
  },
});
const rounds = Number(values.rounds), windowS = Number(values.window), warmupS = Number(values.warmup), connections = Number(values.connections);
const scenarios = values.scenarios.split(',').map((s) => s.trim()).filter(Boolean);
for (const id of scenarios) if (!['b1', 'b3', 'c1'].includes(id)) throw new Error(`unknown scenario ${id} (b1, b3, c1)`);
const envOf = (text) => Object.fromEntries(text.split(/\s+/).filter(Boolean).map((kv) => {
  const at = kv.indexOf('=');
  if (at < 1) throw new Error(`--*-env: "${kv}" is not NAME=value`);
  return [kv.slice(0, at), kv.slice(at + 1)];
}));
const variants = ['a', 'b', 'c']
  .filter((v) => values[v] !== undefined)
  .map((v) => ({ name: v.toUpperCase(), main: values[v], nodeArgs: values[`${v}-node-args`].split(/\s+/).filter(Boolean), env: envOf(values[`${v}-env`]) }));
if (variants.length < 2) throw new Error('give at least --a and --b');
const procStat = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return f.slice(f.lastIndexOf(')') + 2).split(' ');
};
const cpuMs = (pid) => { const x = procStat(pid); return ((Number(x[11]) + Number(x[12])) * 1000) / 100; };
const statusKb = (pid, field) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

/** Scavenges so far: count and total seconds of prom-client's nodejs_gc_duration_seconds{kind="minor"}. */
async function scavenges(s) {
  const text = await api(s.server.base, 'GET', '/v1/sys/metrics', { token: s.server.token });
  const get = (suffix) => Number(new RegExp(`^nodejs_gc_duration_seconds_${suffix}\\{kind="minor"\\} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
  const newSpace = Number(/^nodejs_heap_space_size_total_bytes\{space="new"\} (\S+)/m.exec(text)?.[1] ?? NaN);
  return { count: get('count'), seconds: get('sum'), newSpace };
}

async function main() {
  installCleanupHandlers();
  const pg = await startPostgres({ durable: values.durable });
  const servers = {};
  for (const [i, v] of variants.entries()) {
    const url = i === 0 ? pg.url : await createBenchDatabase(`coffer_bench_${v.name.toLowerCase()}`);
    const server = await startCoffer(v.name, { COFFER_DATABASE_URL: url, COFFER_LOGIN_RATE_PER_SECOND: '0', ...v.env }, {
      serverMain: path.resolve(v.main), nodeArgs: v.nodeArgs, cpuProfDir: values['cpu-prof'] && path.resolve(values['cpu-prof']),
    });
    const user = values.durable
      ? { url: server.base + READ_PATH, method: 'GET', headers: { authorization: `Bearer ${await machineToken(server, 'bench-read', readRules('bench'))}` } }
      : await policyReadRequest(server, READ_PATH);
    const root = { authorization: `Bearer ${server.token}` };
    servers[v.name] = { server, pid: server.child.child.pid, req: { b1: { url: server.base + READ_PATH, method: 'GET', headers: root }, b3: user, c1: writeRequest(server) } };
    console.log(`${v.name}: ${v.main} ${v.nodeArgs.join(' ') || '(no node args)'}${Object.keys(v.env).length > 0 ? ` ${values[`${v.name.toLowerCase()}-env`]}` : ''}`);
  }
  const window = async (name, id, seconds) => {
    const s = servers[name];
    const gc0 = await scavenges(s);
    const before = cpuMs(s.pid);
    const dbBefore = postgresCpuByPid();
    const r = await runLoad(s.req[id], seconds, connections);
    const cpu = (cpuMs(s.pid) - before) / r.requests;
    const db = (postgresCpuBetween(dbBefore, postgresCpuByPid()) ?? NaN) / r.requests;
    const gc1 = await scavenges(s);
    if (r.errors + r.non2xx > 0) throw new Error(`${name} ${id}: ${r.errors} errors, ${r.non2xx} non-2xx`);
    // Per 10k requests: scavenges and their total pause (ms).
    const per10k = 10_000 / r.requests;
    return { cpu, db, rps: r.rps, p99: r.p99, gcs: (gc1.count - gc0.count) * per10k, gcMs: (gc1.seconds - gc0.seconds) * 1000 * per10k, newSpace: gc1.newSpace };
  };
  // Warm-up curve: b1 windows of 2 s from a fresh start.
  for (const { name } of variants) {
    const curve = [];
    for (let t = 0; t < warmupS; t += 2) curve.push((await window(name, 'b1', 2)).cpu.toFixed(3));
    const rest = [];
    for (const id of scenarios.filter((x) => x !== 'b1')) rest.push(`${id} ${(await window(name, id, 2)).cpu.toFixed(3)}`);
    console.log(`${name} warm-up b1 (2 s windows): ${curve.join(' ')}  then ${rest.join(', ')}`);
  }
  const names = variants.map((v) => v.name);
  const got = Object.fromEntries(names.map((n) => [n, Object.fromEntries(scenarios.map((id) => [id, []]))]));
  for (let r = 0; r < rounds; r++) {
    const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)];
    for (const id of scenarios) for (const name of order) {
      const w = await window(name, id, windowS);
      got[name][id].push(w);
      console.log(`round ${r + 1} ${name} ${id}: ${w.cpu.toFixed(3)} ms/req (PostgreSQL ${w.db.toFixed(3)}), ${Math.round(w.rps)} req/s, p99 ${w.p99.toFixed(1)} ms, ` +
        `${w.gcs.toFixed(1)} scavenges ${w.gcMs.toFixed(1)} ms /10k req`);
    }
  }
  const label = (id) => id + (values.durable && id === 'b3' ? ' (p1: AppRole, durable)' : '');
  for (const id of scenarios) {
    const base = median(got[names[0]][id].map((w) => w.cpu)) ?? NaN;
    for (const name of names) {
      const ws = got[name][id];
      const m = (k) => median(ws.map((w) => w[k])) ?? NaN; // NaN prints as such when no window had the figure
      console.log(`median ${label(id)} ${name}: ${m('cpu').toFixed(3)} ms/req (x${(m('cpu') / base).toFixed(3)} of ${names[0]}; PostgreSQL ${m('db').toFixed(3)}), ${Math.round(m('rps'))} req/s, ` +
        `p99 ${m('p99').toFixed(1)} ms, ${m('gcs').toFixed(1)} scavenges ${m('gcMs').toFixed(1)} ms /10k req`);
    }
  }
  for (const name of names) {
    const s = servers[name];
    console.log(`${name} after the run: RSS ${(statusKb(s.pid, 'VmRSS') / 1024).toFixed(1)} MiB (peak ${(statusKb(s.pid, 'VmHWM') / 1024).toFixed(1)} MiB), ` +
      `new space ${((await scavenges(s)).newSpace / 2 ** 20).toFixed(1)} MiB`);
  }
}
main().then(() => cleanup()).then(() => process.exit(0), (err) => { console.error(err); cleanup().finally(() => process.exit(1)); });
