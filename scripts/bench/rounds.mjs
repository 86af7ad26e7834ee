// --rounds N: the HTTP scenarios run N times, each round on fresh server processes (one server
// process's req/s varies 25-50% on a busy machine, so one round cannot tell whether a ratio is
// above or below its aim). This module merges the rounds for the report: per scenario the median
// round (by req/s), with every round's req/s beside it; issue 13's figures and the ratios as the
// median of the rounds' own figures, never a ratio of two medians from different rounds. No
// round's error may be lost: the merged stats carry every round's errors and problems, so the
// verdict in finish() (report.mjs) fails the run on them as it does for one round.
import { median } from './common.mjs';
import { fmtFigure, httpFigures, meetsAim, pairedRatio } from './figures.mjs';
import { SCENARIOS } from './options.mjs';

const ok = (r) => r && !r.skipped;
const numbers = (values) => values.filter((v) => typeof v === 'number' && !Number.isNaN(v));

export { median };


/**
 * The round whose req/s is the median (for an even count, the lower of the middle two): its stats
 * are a real measurement, unlike a mix of rounds' percentiles.
 */
function medianRound(stats) {
  const sorted = [...stats].sort((x, y) => x.rps - y.rps);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Adds up status code counts. */
function addCodes(into, codes) {
  for (const [c, n] of Object.entries(codes ?? {})) into[c] = (into[c] ?? 0) + n;
  return into;
}

/**
 * One scenario over the rounds: the median round's stats, with `roundsRps` (every round's
 * req/s, in round order), `serverCpuMsPerRequest` the median of the rounds', and the errors,
 * non-2xx, timeouts, status codes and warm-up counts of ALL rounds added up, `problems` of all
 * rounds (prefixed with their round), so that finish() reports every one of them.
 */
export function mergeScenario(perRound) {
  const measured = perRound.map((r, i) => ({ r, round: i + 1 })).filter(({ r }) => ok(r));
  if (measured.length === 0) return perRound.find(Boolean) ?? null;
  const mid = medianRound(measured.map(({ r }) => r));
  const sum = (f) => measured.reduce((t, { r }) => t + (f(r) ?? 0), 0);
  const failedRound = measured.find(({ r }) => r.serverLogTail);
  // A round that skipped what the others measured is a problem of its own, not a silent gap.
  const skipped = perRound.map((r, i) => (r && !ok(r) ? `round ${i + 1} skipped it: ${r.skipped}` : null)).filter(Boolean);
  return {
    ...mid,
    roundsRps: perRound.map((r) => (ok(r) ? r.rps : null)),
    roundsServerCpuMsPerRequest: perRound.map((r) => (ok(r) ? (r.serverCpuMsPerRequest ?? null) : null)),
    serverCpuMsPerRequest: median(measured.map(({ r }) => r.serverCpuMsPerRequest)),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    non2xx: sum((r) => r.non2xx),
    statusCodes: measured.reduce((codes, { r }) => addCodes(codes, r.statusCodes), {}),
    warmup: {
      ...mid.warmup,
      errors: sum((r) => r.warmup?.errors),
      non2xx: sum((r) => r.warmup?.non2xx),
      statusCodes: measured.reduce((codes, { r }) => addCodes(codes, r.warmup?.statusCodes), {}),
    },
    problems: [...measured.flatMap(({ r, round }) => (r.problems ?? []).map((p) => `round ${round}: ${p}`)), ...skipped],
    serverLogTail: failedRound ? `(round ${failedRound.round})\n${failedRound.r.serverLogTail}` : undefined,
  };
}

/** The audit pair (windows b1 b0 b0 b1) over the rounds: the median cost, and by CPU. */
export function mergeAuditPairs(pairs) {
  const got = pairs.filter(Boolean);
  if (got.length === 0) return null;
  const byCost = [...got].sort((x, y) => x.cost - y.cost);
  const mid = byCost[Math.floor((byCost.length - 1) / 2)];
  return {
    ...mid,
    cost: median(got.map((p) => p.cost)),
    costByCpu: median(got.map((p) => p.costByCpu)),
    b1CpuMsPerRequest: median(got.map((p) => p.b1CpuMsPerRequest)),
    b0CpuMsPerRequest: median(got.map((p) => p.b0CpuMsPerRequest)),
    roundsCost: pairs.map((p) => p?.cost ?? null),
    roundsCostByCpu: pairs.map((p) => p?.costByCpu ?? null),
    problems: pairs.flatMap((p, i) => (p?.problems ?? []).map((x) => `round ${i + 1}: ${x}`)),
  };
}

/** The rounds' result Maps (id -> stats | { skipped }) as one Map of merged stats, for finish(). */
export function mergeRounds(rounds) {
  const merged = new Map();
  for (const s of SCENARIOS) {
    const perRound = rounds.map((r) => r.get(s.id) ?? null);
    if (perRound.every((r) => r === null)) continue;
    merged.set(s.id, mergeScenario(perRound));
  }
  const pair = mergeAuditPairs(rounds.map((r) => r.get('auditPair') ?? null));
  if (pair) merged.set('auditPair', pair);
  return merged;
}

/**
 * Issue 13's HTTP figures over the rounds: each computed per round, then the median value and
 * the median by-CPU value, judged on the median by the same aim rule as one round's; `from`
 * lists the rounds' values.
 */
export function mergeFigures(rounds) {
  const perRound = rounds.map(httpFigures);
  return perRound[0].map((row, i) => {
    const rows = perRound.map((figures) => figures[i]);
    if (rows.some((r) => r.figure !== row.figure)) throw new Error(`issue 13 figures differ between rounds at "${row.figure}"`);
    const values = rows.map((r) => r.value);
    const value = median(values);
    const measured = numbers(values).length;
    return {
      figure: row.figure,
      value,
      detail: measured === 0 ? row.detail : `median of ${measured}: ${values.map((v) => fmtFigure(row.aim, v)).join(' / ')}`,
      aim: row.aim,
      met: meetsAim(row.aim, value),
      cpu: median(rows.map((r) => r.cpu)),
      rounds: values,
      cpuRounds: rows.map((r) => r.cpu),
    };
  });
}

/**
 * The ratios of the report's ratio lines for one round's results (keys as in the JSON's `ratios`;
 * a key only when both scenarios ran).
 */
export function roundRatios(results) {
  const get = (id) => (ok(results.get(id)) ? results.get(id) : null);
  // As the figures do: from the pair of windows when the round measured one.
  const ratio = (y, x) => pairedRatio(results, y, x).value;
  const ratios = {};
  for (const id of ['b1', 'b2', 'c1', 'c2']) ratios[`${id}_over_a`] = ratio(id, 'a');
  if (get('b3') && get('b1')) ratios.policy_cost = 1 - ratio('b3', 'b1');
  if (get('h1') && get('b1')) ratios.pkcs11_over_shamir = ratio('h1', 'b1');
  return ratios;
}

/** The pairs of windows of one round (`pair:y/x` -> figures.mjs ratioPair). */
export function roundPairs(results) {
  return Object.fromEntries([...results].filter(([key]) => key.startsWith('pair:')).map(([key, pair]) => [key.slice(5), pair]));
}

/** Each pair over the rounds: the median ratio and by CPU, every round's beside them. */
export function mergePairs(rounds) {
  const per = rounds.map(roundPairs);
  const keys = [...new Set(per.flatMap((p) => Object.keys(p)))];
  return Object.fromEntries(
    keys.map((k) => {
      const pairs = per.map((p) => p[k] ?? null);
      const { x, y, order } = pairs.find(Boolean);
      return [k, { x, y, order, ratio: median(pairs.map((p) => p?.ratio)), ratioByCpu: median(pairs.map((p) => p?.ratioByCpu)), roundsRatio: pairs.map((p) => p?.ratio ?? null), roundsRatioByCpu: pairs.map((p) => p?.ratioByCpu ?? null) }];
    }),
  );
}

/** roundRatios over the rounds: each key the median of the rounds' values. */
export function medianRatios(rounds) {
  const per = rounds.map(roundRatios);
  const keys = [...new Set(per.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(keys.map((k) => [k, median(per.map((r) => r[k]))]));
}

/** What the JSON keeps of each round: its raw scenario stats, audit pair and pairs of windows. */
export function roundsForJson(rounds) {
  return rounds.map((results, i) => ({
    round: i + 1,
    scenarios: SCENARIOS.filter((s) => results.has(s.id)).map((s) => ({ id: s.id, ...results.get(s.id) })),
    auditPair: results.get('auditPair') ?? null,
    pairs: roundPairs(results),
  }));
}
