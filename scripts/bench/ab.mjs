#!/usr/bin/env node
// A/B of the single-secret read on warm servers: two builds' servers (A and B) on one throwaway
// PostgreSQL (each its own database), measured in alternating windows so that machine load
// drifts hit both alike. Per window: the loaded server's CPU per request (from /proc).
//
//   node scripts/bench/ab.mjs --a /work/main/server/dist/main.js --b server/dist/main.js \
//     [--rounds 4] [--window 4] [--warmup 10] [--connections 16] [--durable]
//
// Scenarios per round: b1 (root token), b3 (user token, policy evaluated); with --durable the
// cluster is durable (fsync, synchronous_commit) and b3's token is an AppRole one with the (p1)
// read/list policy, i.e. (p1). The first windows after start are printed too (the warm-up curve).
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { runLoad } from './load.mjs';
import { READ_PATH } from './options.mjs';
import { createBenchDatabase, startCoffer, startPostgres } from './servers.mjs';
import { cleanup, installCleanupHandlers } from './session.mjs';
import { policyReadRequest } from './scenarios/identity.mjs';
import { machineToken, readRules } from './scenarios/durable.mjs';

const { values } = parseArgs({
  options: {
    a: { type: 'string' }, b: { type: 'string' }, rounds: { type: 'string', default: '4' }, window: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '10' }, connections: { type: 'string', default: '16' }, durable: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds), windowS = Number(values.window), warmupS = Number(values.warmup), connections = Number(values.connections);
const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(x[11]) + Number(x[12])) * 1000) / 100;
};
const median = (xs) => { const s = [...xs].sort((p, q) => p - q); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

async function main() {
  installCleanupHandlers();
  const pg = await startPostgres({ durable: values.durable });
  const servers = {};
  for (const [name, main] of [['A', values.a], ['B', values.b]]) {
    const url = name === 'A' ? pg.url : await createBenchDatabase('coffer_bench_b');
    const server = await startCoffer(`${name}`, { COFFER_DATABASE_URL: url, COFFER_LOGIN_RATE_PER_SECOND: '0' }, { serverMain: path.resolve(main) });
    const user = values.durable
      ? { url: server.base + READ_PATH, method: 'GET', headers: { authorization: `Bearer ${await machineToken(server, 'bench-read', readRules('bench'))}` } }
      : await policyReadRequest(server, READ_PATH);
    servers[name] = { server, pid: server.child.child.pid, req: { b1: { url: server.base + READ_PATH, method: 'GET', headers: { authorization: `Bearer ${server.token}` } }, b3: user } };
  }
  const window = async (name, id, seconds) => {
    const s = servers[name];
    const before = cpuMs(s.pid);
    const r = await runLoad(s.req[id], seconds, connections);
    const cpu = (cpuMs(s.pid) - before) / r.requests;
    if (r.errors + r.non2xx > 0) throw new Error(`${name} ${id}: ${r.errors} errors, ${r.non2xx} non-2xx`);
    return { cpu, rps: r.rps, p99: r.p99 };
  };
  // Warm-up curve: b1 windows of 2 s from a fresh start.
  for (const name of ['A', 'B']) {
    const curve = [];
    for (let t = 0; t < warmupS; t += 2) curve.push((await window(name, 'b1', 2)).cpu.toFixed(3));
    const c3 = (await window(name, 'b3', 2)).cpu.toFixed(3);
    console.log(`${name} warm-up b1 (2 s windows): ${curve.join(' ')}  then b3 ${c3}`);
  }
  const got = { A: { b1: [], b3: [] }, B: { b1: [], b3: [] } };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? ['B', 'A'] : ['A', 'B'];
    for (const id of ['b1', 'b3']) for (const name of order) {
      const w = await window(name, id, windowS);
      got[name][id].push(w.cpu);
      console.log(`round ${r + 1} ${name} ${id}: ${w.cpu.toFixed(3)} ms/req, ${Math.round(w.rps)} req/s, p99 ${w.p99.toFixed(1)} ms`);
    }
  }
  for (const id of ['b1', 'b3']) {
    const a = median(got.A[id]), b = median(got.B[id]);
    console.log(`median ${id}${values.durable && id === 'b3' ? ' (p1: AppRole, durable)' : ''}: A ${a.toFixed(3)}  B ${b.toFixed(3)} ms/req  B/A ${(b / a).toFixed(3)}`);
  }
}
main().then(() => cleanup()).then(() => process.exit(0), (err) => { console.error(err); cleanup().finally(() => process.exit(1)); });
