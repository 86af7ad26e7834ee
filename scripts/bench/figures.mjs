// The parts of the report added for issue 13: its table of figures (each a ratio of two
// scenarios of this run, with the issue's aim), the scale scenario's table and the AEAD
// micro-benchmark. Aims are printed, never enforced; errors in the scale runs fail the run
// like any other scenario's.
import { fmtInt, fmtMs, fmtRatio, table } from './report.mjs';
import { describeFacts } from './scenarios/scale-pg.mjs';

const ok = (r) => r && !r.skipped;
const verdict = (met) => (met === null ? 'n/a' : met ? 'met' : 'NOT MET');

/**
 * A figure (y)/(x) from windows x y y x, or y x x y (bench.mjs): each scenario's two windows
 * summed, so that a drift of the machine's speed over the four windows cancels out instead of
 * landing on one side, as it does when y is measured minutes after x. `extra`: the windows that are
 * not a scenario's own result, whose errors are `problems`.
 */
export function ratioPair(x, y, xRuns, yRuns, extra) {
  const sum = (runs, f) => runs.reduce((t, r) => t + f(r), 0);
  const cpu = (runs) => (runs.every((r) => r.serverCpuMsPerRequest) ? sum(runs, (r) => r.serverCpuMsPerRequest * r.requests) / sum(runs, (r) => r.requests) : null);
  const cpuX = cpu(xRuns);
  const cpuY = cpu(yRuns);
  return {
    x,
    y,
    xRps: xRuns.map((r) => r.rps),
    yRps: yRuns.map((r) => r.rps),
    ratio: sum(yRuns, (r) => r.rps) / sum(xRuns, (r) => r.rps),
    ratioByCpu: cpuX && cpuY ? cpuX / cpuY : null,
    xCpuMsPerRequest: cpuX,
    yCpuMsPerRequest: cpuY,
    problems: extra.filter((r) => r.errors + r.non2xx > 0 || r.problems?.length > 0).map((r) => `a window of the pair (${y})/(${x}) saw ${r.errors} errors, ${r.non2xx} non-2xx${r.problems?.length > 0 ? `, ${r.problems.join('; ')}` : ''}`),
  };
}

/**
 * The figure (y)/(x) of one round's `results`: from its pair of windows when the round measured
 * one, else from the two scenarios' own windows; null unless both ran. `cpu`: the same by server
 * CPU per request; `pair`: the pair it came from, if any.
 */
export function pairedRatio(results, yId, xId) {
  const pair = results.get(`pair:${yId}/${xId}`);
  if (pair) return { value: pair.ratio, cpu: pair.ratioByCpu, pair };
  const [y, x] = [yId, xId].map((id) => (ok(results.get(id)) ? results.get(id) : null));
  const c = (s) => s?.serverCpuMsPerRequest ?? null;
  return { value: y && x ? y.rps / x.rps : null, cpu: c(x) && c(y) ? c(x) / c(y) : null, pair: null };
}

/** The audit log's cost from the pair (b1)/(b0) of windows b1 b0 b0 b1 (ratioPair): 1 − its ratio. */
export function auditPair(pair) {
  return {
    b1Rps: pair.yRps,
    b0Rps: pair.xRps,
    cost: 1 - pair.ratio,
    costByCpu: pair.ratioByCpu === null ? null : 1 - pair.ratioByCpu,
    b1CpuMsPerRequest: pair.yCpuMsPerRequest,
    b0CpuMsPerRequest: pair.xCpuMsPerRequest,
    problems: pair.problems,
  };
}

/**
 * Whether `value` meets `aim`, read from the aim's text ("≥ 0.5", "≤ 20 ms", "≤ 10%", "≤ 3×"),
 * so that one rule judges every row: a round's and the median of the rounds. null when not
 * measured.
 */
export function meetsAim(aim, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return null;
  const m = /^([≥≤])\s*([\d.]+)\s*(%|ms|×)?$/.exec(aim);
  if (!m) throw new Error(`issue 13 figure: cannot read the aim "${aim}"`);
  const bound = m[3] === '%' ? Number(m[2]) / 100 : Number(m[2]);
  return m[1] === '≥' ? value >= bound : value <= bound;
}

/** A figure's value as the report prints it, in its aim's unit. */
export function fmtFigure(aim, value) {
  if (value === null || value === undefined) return '-';
  if (aim.endsWith('ms')) return `${fmtMs(value)} ms`;
  if (aim.endsWith('%')) return `${(value * 100).toFixed(1)}%`;
  return aim.endsWith('×') ? `${value.toFixed(1)}×` : fmtRatio(value);
}

/**
 * Issue 13's figures from this run's results (and the scale run, if any). Each row: figure,
 * measured value (the ratio) and what it is made of, aim, met (true/false/null when not
 * measured), the same figure by server CPU.
 */
export function issueFigures(results, scale) {
  return [...httpFigures(results), ...scaleFigures(scale)];
}

/** The rows of `add`: `cpu` is the same figure from the server's CPU time per request. */
function figureRows() {
  const rows = [];
  const add = (figure, value, detail, aim, cpu = null) => rows.push({ figure, value, detail, aim, met: meetsAim(aim, value), cpu });
  return { rows, add };
}

/** The figures that are ratios of the HTTP scenarios of one round (`results`). */
export function httpFigures(results) {
  const r = (id) => (ok(results.get(id)) ? results.get(id) : null);
  // `cpu`: the same figure from the server's CPU time per request (scenario x's cost over y's), the
  // reading to trust when other work shares the machine; it leaves out PostgreSQL's own CPU.
  const { rows, add } = figureRows();
  const c = (x) => x?.serverCpuMsPerRequest ?? null;
  const qc = (x, y) => (c(x) && c(y) ? c(x) / c(y) : null);
  const [b0, b1, c1, p1, p2, p1s, p2s, p3] = ['b0', 'b1', 'c1', 'p1', 'p2', 'p1s', 'p2s', 'p3'].map(r);
  const q = (x, y) => (x && y ? x / y : null);
  const rps = (list) => list.map(fmtInt).join(' + ');
  // (y)/(x) by pairedRatio; `detail` says which windows, `extra` is appended to it.
  const addRatio = (figure, yId, xId, aim, extra = '') => {
    const { value, cpu, pair } = pairedRatio(results, yId, xId);
    const [y, x] = [r(yId), r(xId)];
    const from = pair ? `${rps(pair.yRps)} / ${rps(pair.xRps)} req/s, windows ${pair.order}` : y && x ? `${fmtInt(y.rps)} / ${fmtInt(x.rps)} req/s` : '';
    add(figure, value, from && `${from}${extra}`, aim, cpu);
  };

  addRatio('(b1) read, PostgreSQL / (a) hello-world', 'b1', 'a', '≥ 0.5');
  add('(b1) p99', b1?.p99 ?? null, b1 ? `${fmtMs(b1.p99)} ms` : '', '≤ 20 ms');
  addRatio('(p1) read, durable PG, AppRole policy / (a)', 'p1', 'a', '≥ 0.5', p1 ? `, p99 ${fmtMs(p1.p99)} ms` : '');
  const bulk1 = q(p2s?.p50, p1s?.p50);
  add('(p2)/(p1) bulk of 100 vs one read, 1 connection (p50)', bulk1, p1s && p2s ? `${fmtMs(p2s.p50)} vs ${fmtMs(p1s.p50)} ms` : '', '≤ 3×', qc(p2s, p1s));
  const bulkN = q(p1?.rps, p2?.rps);
  add('(p2)/(p1) bulk vs one read, throughput at the run\'s connections', bulkN, p1 && p2 ? `${fmtInt(p2.rps)} vs ${fmtInt(p1.rps)} req/s` : '', '≤ 3×', qc(p2, p1));
  const pair = results.get('auditPair');
  if (pair) {
    add('audit cost: 1 − (b1)/(b0), windows b1 b0 b0 b1', pair.cost, `${rps(pair.b1Rps)} vs ${rps(pair.b0Rps)} req/s`, '≤ 10%', pair.costByCpu);
  } else {
    const audit = b1 && b0 ? 1 - b1.rps / b0.rps : null;
    add('audit cost: 1 − (b1)/(b0)', audit, b1 && b0 ? `${fmtInt(b1.rps)} vs ${fmtInt(b0.rps)} req/s` : '', '≤ 10%', c(b1) && c(b0) ? 1 - c(b0) / c(b1) : null);
  }
  addRatio('(h1) PKCS#11 seal / (b1) Shamir', 'h1', 'b1', '≥ 0.9');
  addRatio('(b3) policy-checked user token / (b1) root', 'b3', 'b1', '≥ 0.9');
  addRatio('(c1) writes / (b1) reads, PostgreSQL', 'c1', 'b1', '≥ 0.5', c1 ? `, c1 p99 ${fmtMs(c1.p99)} ms` : '');
  addRatio('(p3) writes / (p1) reads, durable PG, AppRole', 'p3', 'p1', '≥ 0.5', p3 ? `, p3 p99 ${fmtMs(p3.p99)} ms` : '');
  return rows;
}

/** The scale scenario's figures (run once, after the rounds). */
export function scaleFigures(scale) {
  const { rows, add } = figureRows();
  const q = (x, y) => (x && y ? x / y : null);
  const qc = (x, y) => (x?.serverCpuMsPerRequest && y?.serverCpuMsPerRequest ? x.serverCpuMsPerRequest / y.serverCpuMsPerRequest : null);
  if (ok(scale)) {
    const n = fmtInt(scale.secrets);
    for (const [key, what] of [
      ['read', 'one secret (cached)'],
      ['readHot', 'hot set of 900 (cached)'],
      ['readRandomDb', 'database path (?version=1)'],
      ['bulk', 'bulk read of the late folder'],
    ]) {
      const L = scale.large[key];
      const S = scale.small[key];
      const v = scale.pairedP50Ratio?.[key] ?? q(L.p50, S.p50);
      add(`scale: ${what} p50 at ${n} / at 1k (paired)`, v, `${fmtMs(L.p50)} vs ${fmtMs(S.p50)} ms, ${fmtInt(L.rps)} vs ${fmtInt(S.rps)} req/s`, '≤ 1.10', qc(L, S));
    }
  } else {
    add('scale: read latency at 1M / at 1k secrets', null, scale?.skipped ?? 'run npm run bench -- --scale', '≤ 1.10');
  }
  return rows;
}

/** Prints the figures; without the HTTP scenarios (--scale alone) only those that were measured. */
export function printIssueFigures(rows, out, { all = true, rounds = 1 } = {}) {
  if (!all) rows = rows.filter((row) => row.value !== null);
  const fmt = (row, value) => fmtFigure(row.aim, value);
  out(
    table(
      rows.map((row) => [row.figure, fmt(row, row.value), row.detail, row.aim, verdict(row.met), fmt(row, row.cpu)]),
      ['issue 13 figure', 'measured', 'from', 'aim', '', 'by srv CPU'],
      [false, true, false, false, false, true],
    ),
  );
  if (rounds > 1) out(`(${rounds} rounds: each figure computed per round, "measured" and "by srv CPU" the medians, judged on the median; "from" the rounds' values)`);
  out('(aims are informational and do not fail the run; ratios from one run: compare them, not absolute req/s, across machines;');
  out(' by srv CPU: the same figure from the server process\'s CPU time per request, without PostgreSQL\'s — steadier on a busy machine)');
}

/** The scale table; pushes errors and failed checks of its runs to `failures`. */
export function printScale(scale, failures, out) {
  if (!scale) return;
  if (scale.skipped) {
    out(`WARNING: the scale scenario was SKIPPED: ${scale.skipped}`);
    return;
  }
  const parts = [
    ['read one secret (cached once warm)', 'read'],
    ['read a hot set of 900 secrets (cached)', 'readHot'],
    ['read random secrets out of all (cache misses at N)', 'readRandom'],
    ['read random secrets ?version=1 (never cached)', 'readRandomDb'],
    ['bulk read of the late folder (100)', 'bulk'],
    ['list the late folder', 'list'],
    ['write (AppRole write policy)', 'write'],
  ];
  const rows = [];
  for (const [what, key] of parts) {
    const s = scale.small[key];
    const l = scale.large[key];
    const cpu = (r) => (r.serverCpuMsPerRequest === null ? '-' : r.serverCpuMsPerRequest.toFixed(2));
    rows.push([what, fmtInt(s.rps), fmtMs(s.p50), fmtMs(s.p99), cpu(s), fmtInt(l.rps), fmtMs(l.p50), fmtMs(l.p99), cpu(l), fmtRatio(scale.pairedP50Ratio?.[key] ?? l.p50 / s.p50)]);
    for (const [tag, r] of [['1k', s], ['N', l]]) {
      const errs = r.errors + r.warmup.errors;
      const non2xx = r.non2xx + r.warmup.non2xx;
      if (errs + non2xx > 0) failures.push(`scale ${what} @ ${tag}: ${errs} errors, ${non2xx} non-2xx`);
      for (const p of r.problems ?? []) failures.push(`scale ${what} @ ${tag}: ${p}`);
    }
  }
  const n = fmtInt(scale.secrets);
  out(table(rows, ['scale (durable PG, AppRole)', 'req/s 1k', 'p50', 'p99', 'CPU', `req/s ${n}`, 'p50', 'p99', 'CPU', 'p50 N/1k'], [false, true, true, true, true, true, true, true, true, true]));
  const how = scale.pairing === 'sequential' ? 'back to back in alternating order' : 'at the same time, side by side';
  out(`(medians of ${scale.rounds} rounds at ${scale.connections} connections per server, each measurement at 1k and at ${n} ${how};`);
  out(' p50 N/1k: the median of the rounds\' paired ratios; CPU: server CPU ms per request; 1k and N are two databases of one cluster)');
  out(`PostgreSQL ${scale.pgVersion}, ${scale.pg.source}: ${Object.entries(scale.pg.settings).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  out(`  ${describeFacts('1k', scale.small.pg)}`);
  out(`  ${describeFacts(n, scale.large.pg)}`);
  out(`server RSS: ${scale.small.rssMiB ?? '?'} MiB at 1k secrets, ${scale.large.rssMiB ?? '?'} MiB at ${n}; ${n} secrets across ${scale.namespaces} namespaces seeded in ${scale.seedSeconds.toFixed(1)} s, whole scenario ${(scale.seconds / 60).toFixed(1)} min`);
}

export function printAead(aead, out) {
  if (!aead) return;
  const rows = aead.sizes.map((s) => [`${s.size} B`, fmtInt(s.native), fmtInt(s.noble), `${s.ratio.toFixed(2)}×`, fmtInt(s.nativeOpen), fmtInt(s.nobleOpen), `${s.openRatio.toFixed(2)}×`]);
  out(table(rows, ['AEAD (this process)', 'seal+open/s native', 'noble', 'ratio', 'open/s native', 'noble', 'ratio'], [false, true, true, true, true, true, true]));
  out('(native: OpenSSL ChaCha20-Poly1305 under a noble HChaCha20 subkey, the server\'s path; noble: pure-JS XChaCha20-Poly1305; medians of alternating rounds)');
}
