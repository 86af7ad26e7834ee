// Load generation: one autocannon run with per-request latencies, and a measurement
// (warm-up, then the measured run) that keeps the server's last words when requests failed.
import { readdirSync, readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { info } from './common.mjs';
import { fmtInt, fmtMs } from './report.mjs';
import { session } from './session.mjs';

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * One autocannon run (`request.requests`, when given, is autocannon's list of requests, e.g. with
 * a `setupRequest` that picks a path per request). Latencies are collected from every response as float milliseconds
 * (autocannon's own histogram truncates to whole milliseconds, too coarse for sub-ms p50s).
 */
export async function runLoad(request, seconds, connections, onResponse) {
  const latencies = [];
  const instance = autocannon({
    url: request.url,
    method: request.method,
    headers: request.headers,
    body: request.body,
    ...(request.requests ? { requests: request.requests } : {}),
    connections,
    duration: seconds,
    pipelining: 1,
    timeout: 10,
  });
  session.currentLoad = instance;
  instance.on('response', (_client, status, _bytes, ms) => {
    latencies.push(ms);
    onResponse?.(status);
  });
  try {
    const result = await instance;
    latencies.sort((x, y) => x - y);
    const completed = result.requests.total;
    return {
      seconds: result.duration,
      requests: completed,
      rps: completed / result.duration,
      p50: percentile(latencies, 50),
      p90: percentile(latencies, 90),
      p99: percentile(latencies, 99),
      max: latencies.length ? latencies[latencies.length - 1] : null,
      errors: result.errors, // connection errors and timeouts
      timeouts: result.timeouts,
      non2xx: result.non2xx,
      statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count])),
    };
  } finally {
    session.currentLoad = null;
  }
}

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux Node supports

/**
 * CPU time (user + system) a process has used, in ms, from /proc; null elsewhere. Per request it
 * is the server's cost, far less sensitive to other load on the machine than req/s.
 */
function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/**
 * CPU time of each process of the running PostgreSQL cluster (postmaster and its children,
 * backends included), in ms by pid; null without one or off Linux. The audit log's cost is
 * mostly here, not in the server.
 */
export function postgresCpuByPid() {
  const dataDir = session.cluster?.dataDir;
  if (!dataDir) return null;
  try {
    const postmaster = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    const byPid = new Map([[postmaster, cpuMs(postmaster) ?? 0]]);
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue;
      }
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) byPid.set(Number(entry), cpuMs(entry) ?? 0);
    }
    return byPid;
  } catch {
    return null;
  }
}

/**
 * The cluster's CPU time between two snapshots: per process, so that a backend that exits
 * meanwhile (an idle pool connection closing, an autovacuum worker) does not take its whole
 * lifetime's CPU out of the sum; what it used in the window is lost, a small undercount.
 */
export function postgresCpuBetween(before, after) {
  if (!before || !after) return null;
  let total = 0;
  for (const [pid, ms] of after) {
    const used = ms - (before.get(pid) ?? 0);
    total += used >= 0 ? used : ms; // less than before: the pid was reused by a new process
  }
  return total;
}

/** The longest a warm-up runs to reach its request count (slow scenarios, e.g. logins, stop here). */
export const WARMUP_MAX_S = 8;

/**
 * At least `opts.warmup` seconds, then on in 1 s rounds until `opts.warmupRequests` requests have
 * been served (or WARMUP_MAX_S). A server's first few thousand requests of a kind run partly
 * unoptimised and its JIT compiler threads count as its CPU: counted in requests rather than
 * seconds, because on a busy machine a second holds fewer of them (a read's CPU fell from about
 * 1.3 to 0.4 ms over its first ~8,000 requests; scripts/bench/ab.mjs prints that curve).
 */
async function warmUp(request, opts, onResponse) {
  const started = Date.now();
  const warm = await runLoad(request, opts.warmup, opts.connections, onResponse);
  // Each run stops with up to `connections` requests in flight that the server may still commit.
  warm.runs = 1;
  while (warm.requests < opts.warmupRequests && Date.now() - started < WARMUP_MAX_S * 1000 && !session.shuttingDown) {
    const more = await runLoad(request, 1, opts.connections, onResponse);
    warm.runs += 1;
    warm.requests += more.requests;
    warm.errors += more.errors;
    warm.non2xx += more.non2xx;
    for (const [code, n] of Object.entries(more.statusCodes)) warm.statusCodes[code] = (warm.statusCodes[code] ?? 0) + n;
  }
  return warm;
}

/** Warm-up, then the measured run. Returns the measured stats plus what the warm-up saw. */
export async function measure(scenario, server, request, opts, onResponse) {
  info(`${scenario.label}: warm-up ${opts.warmup} s${opts.warmupRequests > 0 ? ` and ${fmtInt(opts.warmupRequests)} requests (at most ${WARMUP_MAX_S} s)` : ''}, then ${opts.duration} s at ${opts.connections} connections`);
  const warm = await warmUp(request, opts, onResponse);
  if (session.shuttingDown) throw new Error('interrupted');
  const pid = server.child?.child?.pid;
  const cpuBefore = pid ? cpuMs(pid) : null;
  const dbBefore = postgresCpuByPid();
  const stats = await runLoad(request, opts.duration, opts.connections, onResponse);
  if (session.shuttingDown) throw new Error('interrupted');
  const cpuAfter = pid ? cpuMs(pid) : null;
  const dbAfter = postgresCpuByPid();
  stats.serverCpuMsPerRequest = cpuBefore !== null && cpuAfter !== null && stats.requests > 0 ? (cpuAfter - cpuBefore) / stats.requests : null;
  const dbMs = postgresCpuBetween(dbBefore, dbAfter);
  stats.dbCpuMsPerRequest = dbMs !== null && stats.requests > 0 ? dbMs / stats.requests : null;
  stats.warmup = { requests: warm.requests, errors: warm.errors, non2xx: warm.non2xx, statusCodes: warm.statusCodes };
  // Load runs (warm-up rounds and the measured one), each of which may end with requests in flight.
  stats.loadRuns = warm.runs + 1;
  if (stats.errors + stats.non2xx + warm.errors + warm.non2xx > 0) {
    // Keep what the server said (it logs 5xx causes at warn level and above) for the failure report.
    stats.serverLogTail = server.child
      .output()
      .split('\n')
      .slice(-10)
      .map((l) => (l.length > 600 ? `${l.slice(0, 600)}…` : l))
      .join('\n');
  }
  const cpu =
    (stats.serverCpuMsPerRequest === null ? '' : `, server CPU ${stats.serverCpuMsPerRequest.toFixed(3)} ms/req`) +
    (stats.dbCpuMsPerRequest === null ? '' : `, PostgreSQL CPU ${stats.dbCpuMsPerRequest.toFixed(3)} ms/req`);
  info(`  ${fmtInt(stats.rps)} req/s, p50 ${fmtMs(stats.p50)} ms, p99 ${fmtMs(stats.p99)} ms${cpu}, errors ${stats.errors}, non-2xx ${stats.non2xx}`);
  return stats;
}

