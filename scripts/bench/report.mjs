// The report: the tables, ratios and aims printed after the scenarios ran, the JSON file, and the
// verdict (failed if any scenario saw an error, a non-2xx answer or a failed check).
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_SERVER_MAIN, banner, info, out, requireFromRoot, requireFromServer } from './common.mjs';
import { issueFigures, printAead, printIssueFigures, printScale, scaleFigures } from './figures.mjs';
import { median, medianRatios, mergeFigures, mergePairs, roundPairs, roundRatios, roundsForJson } from './rounds.mjs';
import { printHsmKms, printKms } from './scenarios/kms.mjs';
import { AIM, AIM_TEXT, CLI_AIM_MS, REWRAP_AIM, REWRAP_SCENARIOS, SCENARIOS, scenario } from './options.mjs';

export const fmtInt = (n) => (n === null || n === undefined ? '-' : Math.round(n).toLocaleString('en-US'));
export const fmtMs = (n) => (n === null || n === undefined ? '-' : n < 10 ? n.toFixed(2) : n.toFixed(1));
export const fmtRatio = (n) => (n === null ? 'n/a' : n.toFixed(2));

export function table(rows, headers, alignRight) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells.map((c, i) => (alignRight[i] ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function machineInfo(pgVersion) {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    availableParallelism: os.availableParallelism?.() ?? cpus.length,
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    autocannon: requireFromRoot('autocannon/package.json').version,
    express: requireFromServer('express/package.json').version,
    postgres: pgVersion ?? null,
    loadavg: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** The lines before the first scenario: what is measured, on what machine. */
export function printHeader(opts) {
  const machine = machineInfo(null);
  // --scale alone runs at its own concurrency (--scale-connections), not --connections.
  const scaleOnly = opts.only?.length === 1 && opts.only[0] === 'scale';
  const connections = scaleOnly ? `${opts.scaleConnections} connections per server` : `${opts.connections} connections`;
  const rounds = opts.rounds > 1 ? `, ${opts.rounds} rounds` : '';
  out(`Coffer benchmark — ${opts.quick ? 'quick (CI smoke)' : 'full'}${rounds}: ${opts.duration} s per scenario after ${opts.warmup} s warm-up${opts.warmupRequests > 0 ? ` (and at least ${opts.warmupRequests} requests, up to 8 s)` : ''}, ${connections}`);
  out(`machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, ${machine.platform}, load ${machine.loadavg.join(' ')}`);
  out(`node ${machine.node}, autocannon ${machine.autocannon}, express ${machine.express}`);
  out(`note: the load generator, the server and PostgreSQL all share these ${machine.cpus} CPUs.`);
  if (opts.serverMain !== DEFAULT_SERVER_MAIN) out(`server under test: ${opts.serverMain}`);
  if (machine.loadavg[0] > machine.cpus * 0.5) {
    out(`WARNING: the machine is already busy (1-min load average ${machine.loadavg[0]} on ${machine.cpus} CPUs): numbers may be low and noisy`);
  }
  out();
}

/**
 * Prints the report and writes the JSON file (--json). Returns the exit status: 1 when a
 * scenario saw errors, non-2xx answers or failed a check, else 0. With --rounds N > 1,
 * `results` are the rounds merged (rounds.mjs mergeRounds: every round's errors included) and
 * `roundResults` each round's own; figures and ratios are then the medians of the rounds'.
 */
export function finish({ opts, results, roundResults = null, rewrapResults, cliResults, aead = null, scale = null, pgVersion, started }) {
  const machine = machineInfo(pgVersion);
  const n = roundResults?.length ?? 1;
  const multi = n > 1;
  const ofRounds = multi ? ` (median of ${n} rounds)` : '';
  const failures = [];
  const rows = [];
  for (const s of SCENARIOS) {
    const r = results.get(s.id);
    if (!r) continue;
    if (r.skipped) {
      rows.push([s.label, 'SKIPPED', ...(multi ? ['-'] : []), '-', '-', '-', '-', '-', r.skipped]);
      continue;
    }
    const errs = r.errors + r.warmup.errors;
    const non2xx = r.non2xx + r.warmup.non2xx;
    const cpu = r.serverCpuMsPerRequest === null || r.serverCpuMsPerRequest === undefined ? '-' : r.serverCpuMsPerRequest.toFixed(3);
    const row = [s.label, fmtInt(r.rps), fmtMs(r.p50), fmtMs(r.p99), fmtMs(r.max), cpu, fmtInt(r.requests), `${errs} / ${non2xx}`];
    if (multi) row.splice(2, 0, r.roundsRps.map(fmtInt).join(' / '));
    rows.push(row);
    if (errs > 0 || non2xx > 0) {
      const codes = { ...r.warmup.statusCodes };
      for (const [c, n] of Object.entries(r.statusCodes)) codes[c] = (codes[c] ?? 0) + n;
      failures.push(`${s.label}: ${errs} errors (${r.timeouts} timeouts), ${non2xx} non-2xx; status codes ${JSON.stringify(codes)}`);
    }
    for (const p of r.problems ?? []) failures.push(`${s.label}: ${p}`);
  }
  // --aead or --scale alone: no HTTP table, no ratios of it.
  const http = results.size > 0;
  if (http) {
    out();
    const headers = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'srv CPU ms/req', 'requests', 'errors / non-2xx'];
    if (multi) headers.splice(2, 0, 'req/s per round');
    out(table(rows, headers, headers.map((_, i) => i > 0)));
    out('(errors / non-2xx include the warm-up; latencies are per request, measured by the client; srv CPU: the server process\'s CPU time per request, which other load on the machine disturbs far less than req/s)');
    if (multi) out(`(${n} rounds, each on fresh servers: a row is the median round by req/s, srv CPU the median of the rounds', errors / non-2xx all rounds' together)`);
  }
  for (const s of SCENARIOS) {
    const r = results.get(s.id);
    if (r?.skipped) out(`WARNING: ${s.label.replace(/\s+/g, ' ')} was SKIPPED: ${r.skipped}`);
  }

  // With rounds, each ratio is the median of the rounds' own ratios (a round's two scenarios ran
  // minutes apart on one machine state; two medians could come from different rounds).
  const ratios = multi ? medianRatios(roundResults) : roundRatios(results);
  const pairs = multi ? mergePairs(roundResults) : roundPairs(results);
  // A ratio line whose ratio comes from a pair of windows, not from the req/s it prints beside it.
  const fromPair = (y, x) => (pairs[`${y}/${x}`] ? ` (ratio from windows ${pairs[`${y}/${x}`].order})` : '');
  if (http) {
    out();
    out(`ratio (b1)/(a) = ${fmtRatio(ratios.b1_over_a)}${fromPair('b1', 'a')}    ratio (b2)/(a) = ${fmtRatio(ratios.b2_over_a)}${multi ? `    (medians of ${n} rounds' ratios)` : ''}`);
  }
  const b1r = results.get('b1');
  const b3 = results.get('b3');
  if (b3 && !b3.skipped && b1r && !b1r.skipped) {
    out(`policy cost on reads: (b3) user token ${Math.round(b3.rps)} req/s vs (b1) root ${Math.round(b1r.rps)} req/s, (b3)/(b1) = ${fmtRatio(1 - ratios.policy_cost)}${ofRounds}${fromPair('b3', 'b1')} (aim ≥ 0.9)`);
  }
  for (const id of ['l1', 'l2', 'l3']) {
    const l = results.get(id);
    if (l && !l.skipped) out(`${scenario(id).label}: ${Math.round(l.rps)} logins/s, p99 ${fmtMs(l.p99)} ms`);
  }
  const b0 = results.get('b0');
  const pair = results.get('auditPair');
  if (pair && multi) {
    ratios.audit_cost = pair.cost;
    const pct = (list) => list.map((v) => (v === null ? '-' : `${(v * 100).toFixed(1)}%`)).join(' / ');
    const cpu = pair.costByCpu === null ? '' : `; by server CPU ${(pair.costByCpu * 100).toFixed(1)}% (rounds ${pct(pair.roundsCostByCpu)})`;
    out(`audit cost on reads, windows b1 b0 b0 b1, median of ${n} rounds: ${(pair.cost * 100).toFixed(1)}% (rounds ${pct(pair.roundsCost)})${cpu} (aim ≤ 10%)`);
  } else if (pair) {
    ratios.audit_cost = pair.cost;
    const cpu = pair.costByCpu === null ? '' : `; by server CPU ${(pair.costByCpu * 100).toFixed(1)}% (${pair.b1CpuMsPerRequest.toFixed(3)} vs ${pair.b0CpuMsPerRequest.toFixed(3)} ms/req)`;
    out(`audit cost on reads, windows b1 b0 b0 b1: (b1) with audit ${pair.b1Rps.map(Math.round).join(' + ')} req/s vs (b0) without ${pair.b0Rps.map(Math.round).join(' + ')} req/s = ${(pair.cost * 100).toFixed(1)}%${cpu} (aim ≤ 10%)`);
  } else if (b0 && !b0.skipped && b1r && !b1r.skipped) {
    const cost = 1 - b1r.rps / b0.rps;
    ratios.audit_cost = cost;
    out(`audit cost on reads: (b1) with audit ${Math.round(b1r.rps)} req/s vs (b0) without ${Math.round(b0.rps)} req/s = ${(cost * 100).toFixed(1)}% (aim ≤ 10%)`);
  }
  const h1 = results.get('h1');
  if (h1 && !h1.skipped && b1r && !b1r.skipped) {
    out(`PKCS#11 seal vs Shamir seal, reads: (h1) ${Math.round(h1.rps)} req/s vs (b1) ${Math.round(b1r.rps)} req/s = ${fmtRatio(ratios.pkcs11_over_shamir)}${ofRounds}${fromPair('h1', 'b1')} (aim ≥ 0.90)`);
  }
  // With rounds, the KMS lines compare the merged (median-round) stats, not per-round ratios.
  printKms(results, ratios, out);
  printHsmKms(results, ratios, out);
  if (rewrapResults.size > 0) {
    const rewrapRows = [];
    for (const s of REWRAP_SCENARIOS) {
      const r = rewrapResults.get(s.id);
      if (!r) continue;
      if (r.skipped) {
        rewrapRows.push([s.label, 'SKIPPED', '-', '-', r.skipped]);
        continue;
      }
      rewrapRows.push([s.label, fmtInt(r.deksPerSecond), fmtInt(r.deks), r.seconds.toFixed(2), r.problems.length ? 'PROBLEMS' : 'ok']);
      for (const p of r.problems) failures.push(`${s.label}: ${p}`);
    }
    out();
    out(table(rewrapRows, ['rewrap scenario', 'DEKs/s', 'DEKs', 'seconds', 'check'], [false, true, true, true, false]));
    out(`rewrap aim (from the issue): ≥ ${fmtInt(REWRAP_AIM)} DEKs/s for 100k secrets — informational, does not fail the run`);
  }
  for (const s of SCENARIOS) {
    const w = results.get(s.id)?.writeCheck;
    if (w) out(`${s.label}: ${w.acknowledged} PUTs acknowledged, current_version ${w.currentVersion}, ${w.versionsKept} versions kept (max_versions ${w.maxVersions})`);
  }

  if (cliResults.d1 || cliResults.d2) {
    out();
    const cliRows = [];
    const d1 = cliResults.d1;
    if (d1) {
      cliRows.push([`(d1) coffer run -- true, ${d1.secrets} secrets`, fmtMs(d1.p50), fmtMs(d1.p90), fmtMs(d1.max), String(d1.runs)]);
      cliRows.push(['     node -e 0 (floor)', fmtMs(d1.node_floor.p50), fmtMs(d1.node_floor.p90), fmtMs(d1.node_floor.max), String(d1.node_floor.runs)]);
    }
    const d2 = cliResults.d2;
    if (d2) cliRows.push([`(d2) SDK bulk fetch, ${d2.secrets} secrets`, fmtMs(d2.p50), fmtMs(d2.p90), fmtMs(d2.max), String(d2.runs)]);
    out(table(cliRows, ['CLI / SDK (wall time, sequential)', 'p50 ms', 'p90 ms', 'max ms', 'runs'], [false, true, true, true, true]));
    if (d1) out(`aim: coffer run -- true with ${d1.secrets} secrets ≤ ${CLI_AIM_MS} ms: p50 ${fmtMs(d1.p50)} ms => ${d1.p50 <= CLI_AIM_MS ? 'MET' : 'NOT MET'} (informational)`);
  }

  if (scale) {
    out();
    printScale(scale, failures, out);
  }
  if (aead) {
    out();
    printAead(aead, out);
  }
  const figures = multi ? [...mergeFigures(roundResults), ...scaleFigures(scale)] : issueFigures(results, scale);
  if (http || scale) {
    out();
    printIssueFigures(figures, out, { all: http, rounds: n });
  }

  // The aim from the issue (informational only).
  const a = results.get('a');
  const b1 = results.get('b1');
  let aim = { text: AIM_TEXT, evaluated: false, met: null };
  if (http) out();
  if (http) out(`aim (from the issue): ${AIM_TEXT}${multi ? ` — median of ${n} rounds` : ''}`);
  if (b1 && !b1.skipped && a && !a.skipped) {
    const p99 = multi ? median(roundResults.map((r) => (r.get('b1')?.skipped ? null : r.get('b1')?.p99))) : b1.p99;
    const throughputOk = ratios.b1_over_a >= AIM.ratio;
    const latencyOk = p99 <= AIM.p99Ms;
    const atAimConnections = opts.connections === AIM.connections;
    aim = {
      text: AIM_TEXT,
      evaluated: true,
      connections: opts.connections,
      atAimConnections,
      ratio: ratios.b1_over_a,
      p99Ms: p99,
      throughputOk,
      latencyOk,
      met: throughputOk && latencyOk,
    };
    out(`  throughput: (b1)/(a) = ${fmtRatio(ratios.b1_over_a)}  (need ≥ ${AIM.ratio})   ${throughputOk ? 'ok' : 'NOT MET'}`);
    out(`  latency:    p99 (b1) = ${fmtMs(p99)} ms  (need ≤ ${AIM.p99Ms} ms)   ${latencyOk ? 'ok' : 'NOT MET'}`);
    out(
      `  => ${aim.met ? 'MET' : 'NOT MET'}${atAimConnections ? '' : ` (measured at ${opts.connections} connections, not ${AIM.connections}: indicative only)`}` +
        ' — informational, does not fail the run',
    );
  } else if (http) {
    out('  not evaluated: needs both (a) and (b1)');
  }

  if (opts.json) {
    const report = {
      date: new Date(started).toISOString(),
      mode: opts.quick ? 'quick' : 'full',
      // With rounds > 1 every figure below is the merged one (medians); roundResults has each round's raw stats.
      rounds: n,
      ...(multi ? { roundResults: roundsForJson(roundResults) } : {}),
      options: { duration: opts.duration, warmup: opts.warmup, warmupRequests: opts.warmupRequests, connections: opts.connections, only: opts.only, server: opts.serverMain },
      machine,
      scenarios: SCENARIOS.filter((s) => results.has(s.id)).map((s) => ({ id: s.id, label: s.label.replace(/\s+/g, ' '), ...results.get(s.id) })),
      rewrap: REWRAP_SCENARIOS.filter((s) => rewrapResults.has(s.id)).map((s) => ({ id: s.id, label: s.label, aimDeksPerSecond: REWRAP_AIM, ...rewrapResults.get(s.id) })),
      ratios,
      auditPair: results.get('auditPair') ?? null,
      pairs,
      aim,
      cli: cliResults,
      aead,
      scale,
      issue13: figures,
      failures,
      ok: failures.length === 0,
    };
    mkdirSync(path.dirname(opts.json), { recursive: true });
    writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
    out();
    info(`results written to ${opts.json}`);
  }
  if (opts.cpuProfDir) info(`CPU profiles of the Coffer servers are in ${opts.cpuProfDir}`);

  out();
  if (failures.length > 0) {
    for (const s of SCENARIOS) {
      const log = results.get(s.id)?.serverLogTail;
      if (log) process.stderr.write(`\n--- ${s.label.replace(/\s+/g, ' ')}: last lines of the server's output ---\n${log}\n`);
    }
    process.stderr.write(`${banner(['FAILED: the benchmark saw errors, so something is broken:', ...failures])}\n`);
    out(`bench: FAILED in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 1;
  }
  out(`bench: ok in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}
