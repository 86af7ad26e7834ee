// scripts/bench/rounds.mjs (`npm run bench -- --rounds N`): the rounds' results merged for the
// report. What must hold: an error, non-2xx answer, timeout, warm-up error or failed write check
// of ANY round fails the run through finish() (report.mjs), also when that round is not the
// median one whose stats the table shows; and issue 13's figures are the medians of the rounds'
// own figures, judged on the median by the same aim rule as one round's. The merging and the
// verdict are the real modules; only the measured stats are made up here (a real two-round run
// is test/integration/bench-rounds.test.ts).
import { jest } from '@jest/globals';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Stats {
  rps: number;
  p50: number;
  p99: number;
  max: number;
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  warmup: { requests: number; errors: number; non2xx: number; statusCodes: Record<string, number> };
  serverCpuMsPerRequest: number | null;
  problems?: string[];
  roundsRps?: Array<number | null>;
}
type Results = Map<string, unknown>;
interface Figure {
  figure: string;
  value: number | null;
  detail: string;
  aim: string;
  met: boolean | null;
  cpu: number | null;
  rounds: Array<number | null>;
}
interface Rounds {
  median(values: Array<number | null>): number | null;
  mergeRounds(rounds: Results[]): Map<string, Stats>;
  mergeFigures(rounds: Results[]): Figure[];
  medianRatios(rounds: Results[]): Record<string, number | null>;
}
interface Report {
  finish(args: Record<string, unknown>): number;
}
interface Figures {
  meetsAim(aim: string, value: number | null): boolean | null;
}

const load = async <T>(file: string): Promise<T> => (await import(pathToFileURL(path.join(ROOT, 'scripts', 'bench', file)).href)) as T;
let rounds: Rounds;
let report: Report;
let figures: Figures;

beforeAll(async () => {
  rounds = await load<Rounds>('rounds.mjs');
  report = await load<Report>('report.mjs');
  figures = await load<Figures>('figures.mjs');
});

function stats(rps: number, extra: Partial<Stats> = {}): Stats {
  return {
    rps,
    p50: 2,
    p99: 8,
    max: 12,
    requests: rps * 2,
    errors: 0,
    timeouts: 0,
    non2xx: 0,
    statusCodes: { '200': rps * 2 },
    warmup: { requests: 5000, errors: 0, non2xx: 0, statusCodes: { '200': 5000 } },
    serverCpuMsPerRequest: 100 / rps,
    ...extra,
  };
}

const round = (a: number, b1: number, b0: number, more: Record<string, Stats> = {}): Results =>
  new Map<string, unknown>([
    ['a', stats(a)],
    ['b1', stats(b1)],
    ['b0', stats(b0)],
    ...Object.entries(more),
  ]);

/** finish() over merged rounds, its output captured: the exit status and what it wrote to stderr. */
function verdict(roundResults: Results[]): { code: number; stderr: string } {
  let stderr = '';
  jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  const results = rounds.mergeRounds(roundResults);
  const code = report.finish({
    opts: { quick: true, connections: 8, duration: 1, rounds: roundResults.length, json: null, cpuProfDir: null },
    results,
    roundResults,
    rewrapResults: new Map(),
    cliResults: {},
    pgVersion: null,
    started: Date.now(),
  });
  jest.restoreAllMocks();
  return { code, stderr };
}

describe('bench --rounds: no round\'s error is lost', () => {
  it('passes when no round saw an error (so the failures below are the errors\' doing)', () => {
    expect(verdict([round(10_000, 5_000, 5_500), round(9_000, 6_000, 6_500)]).code).toBe(0);
  });

  it('fails the run on non-2xx answers in round 2 of b1, which is not the median round shown', () => {
    // Round 2's b1 is the faster one: the table shows round 1's (the lower middle of two).
    const bad = round(9_000, 6_000, 6_500);
    bad.set('b1', stats(6_000, { non2xx: 3, statusCodes: { '200': 11_997, '503': 3 } }));
    const merged = rounds.mergeRounds([round(10_000, 5_000, 5_500), bad]);
    expect(merged.get('b1')?.rps).toBe(5_000);
    expect(merged.get('b1')?.non2xx).toBe(3);
    const { code, stderr } = verdict([round(10_000, 5_000, 5_500), bad]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/\(b1\) read secret, PostgreSQL: 0 errors \(0 timeouts\), 3 non-2xx; status codes \{"200":\d+,"503":3\}/);
  });

  it('fails the run on timeouts and warm-up errors of a round that is not the median', () => {
    const r3 = round(11_000, 7_000, 7_500);
    r3.set('a', stats(11_000, { errors: 2, timeouts: 2, warmup: { requests: 5000, errors: 1, non2xx: 4, statusCodes: { '500': 4 } } }));
    const { code, stderr } = verdict([round(10_000, 5_000, 5_500), round(9_000, 6_000, 6_500), r3]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/\(a\)\s+express hello-world: 3 errors \(2 timeouts\), 4 non-2xx/);
  });

  it('fails the run on a failed write check (lost writes) in round 1 only, naming the round', () => {
    const c1 = (rps: number, problems: string[] = []) => stats(rps, { problems });
    const r1 = round(10_000, 5_000, 5_500, { c1: c1(900, ['lost writes: 1800 PUTs acknowledged but current_version is 1799']) });
    const r2 = round(9_000, 6_000, 6_500, { c1: c1(800) });
    const { code, stderr } = verdict([r1, r2]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/\(c1\) write secret, PostgreSQL: round 1: lost writes: 1800 PUTs acknowledged/);
  });
});

describe('bench --rounds: figures are medians of the rounds\' figures', () => {
  it('takes the median of the per-round ratios, by req/s and by CPU, and judges the aim on it', () => {
    // (b1)/(a) per round: 0.45, 0.61, 0.52 → median 0.52 (met) though one round is below 0.5.
    const rs = [round(10_000, 4_500, 5_000), round(10_000, 6_100, 7_000), round(10_000, 5_200, 5_800)];
    const row = rounds.mergeFigures(rs).find((f) => f.figure.startsWith('(b1) read, PostgreSQL / (a)'));
    expect(row?.rounds).toEqual([0.45, 0.61, 0.52]);
    expect(row?.value).toBeCloseTo(0.52, 10);
    expect(row?.met).toBe(true);
    expect(row?.detail).toBe('median of 3: 0.45 / 0.61 / 0.52');
    // By CPU: (a)'s cost over (b1)'s = b1 rps / a rps here (cpu = 100 / rps).
    expect(row?.cpu).toBeCloseTo(0.52, 10);
    expect(rounds.medianRatios(rs).b1_over_a).toBeCloseTo(0.52, 10);
    // Two rounds: the mean of the middle two; below the aim on the median even though one round met it.
    const two = rounds.mergeFigures([round(10_000, 4_000, 5_000), round(10_000, 5_200, 5_800)]).find((f) => f.figure.startsWith('(b1) read'));
    expect(two?.value).toBeCloseTo(0.46, 10);
    expect(two?.met).toBe(false);
  });

  it('reads every aim of the figures table with one rule', () => {
    expect(figures.meetsAim('≥ 0.5', 0.5)).toBe(true);
    expect(figures.meetsAim('≥ 0.5', 0.4999)).toBe(false);
    expect(figures.meetsAim('≤ 20 ms', 20)).toBe(true);
    expect(figures.meetsAim('≤ 20 ms', 20.01)).toBe(false);
    expect(figures.meetsAim('≤ 10%', 0.1)).toBe(true);
    expect(figures.meetsAim('≤ 10%', 0.11)).toBe(false);
    expect(figures.meetsAim('≤ 3×', 3)).toBe(true);
    expect(figures.meetsAim('≤ 1.10', 1.1001)).toBe(false);
    expect(figures.meetsAim('≥ 0.9', null)).toBeNull();
    expect(() => figures.meetsAim('about 2', 2)).toThrow(/cannot read the aim/);
  });

  it('shows the median round\'s stats with every round\'s req/s, and the median server CPU', () => {
    const merged = rounds.mergeRounds([round(10_000, 5_000, 5_500), round(9_000, 6_000, 6_500), round(11_000, 4_000, 6_000)]);
    expect(merged.get('b1')?.rps).toBe(5_000);
    expect(merged.get('b1')?.roundsRps).toEqual([5_000, 6_000, 4_000]);
    expect(merged.get('b1')?.serverCpuMsPerRequest).toBeCloseTo(100 / 5_000, 10);
    expect(merged.get('b0')?.roundsRps).toEqual([5_500, 6_500, 6_000]);
    expect(rounds.median([3, null, 1, 2])).toBe(2);
  });
});

// scripts/bench/pairs.mjs: a figure over two scenarios measured in windows lead, inner, inner,
// lead (like the audit pair), so that the machine's drift between them cancels out. What must
// hold: the figure is the pair's ratio of summed req/s (not the scenarios' own windows, which can
// be minutes apart), and an error in any window that is not a scenario's own result still fails
// the run.
interface Pairs {
  pairWindows(
    results: Results,
    args: { lead: { id: string; window: Stats; measure: (o: unknown) => Promise<Stats> }; inner: { id: string; measure: (o: unknown) => Promise<Stats> }; y: string; opts: unknown },
  ): Promise<Stats>;
}
interface HttpFigures {
  httpFigures(results: Results): Figure[];
}

describe('bench pairs of windows', () => {
  let pairs: Pairs;
  let httpFigures: HttpFigures['httpFigures'];
  beforeAll(async () => {
    pairs = await load<Pairs>('pairs.mjs');
    httpFigures = (await load<HttpFigures>('figures.mjs')).httpFigures;
  });

  /** A scenario whose windows are `list`, in order; records the options of each call. */
  const windows = (id: string, list: Stats[]) => {
    const calls: unknown[] = [];
    return { id, calls, measure: (o: unknown) => (calls.push(o), Promise.resolve(list[calls.length - 1]!)) };
  };
  const opts = { warmupRequests: 10_000, duration: 1 };

  it('measures lead, inner, inner, lead and takes the figure from the four windows, not the scenarios\' own', async () => {
    const b1First = stats(5_000);
    const results: Results = new Map<string, unknown>([['b1', b1First]]);
    const c1 = windows('c1', [stats(2_000), stats(2_600)]);
    const b1 = { ...windows('b1', [stats(6_000)]), window: b1First };
    const last = await pairs.pairWindows(results, { lead: b1, inner: c1, y: 'c1', opts });
    expect(last.rps).toBe(6_000);
    expect((results.get('c1') as Stats).rps).toBe(2_000);
    // The inner scenario's first window warms up fully; the windows after it on warm servers briefly.
    expect(c1.calls).toEqual([opts, { ...opts, warmupRequests: 0 }]);
    expect(b1.calls).toEqual([{ ...opts, warmupRequests: 0 }]);
    const pair = results.get('pair:c1/b1') as { ratio: number; order: string; ratioByCpu: number };
    expect(pair.ratio).toBeCloseTo((2_000 + 2_600) / (5_000 + 6_000), 12);
    expect(pair.order).toBe('b1 c1 c1 b1');
    // The figure is the pair's, where the scenarios' own windows would say 2,000 / 5,000 = 0.4.
    const row = httpFigures(results).find((f) => f.figure.startsWith('(c1) writes'))!;
    expect(row.value).toBeCloseTo(4_600 / 11_000, 12);
    expect(row.detail).toMatch(/^2,000 \+ 2,600 \/ 5,000 \+ 6,000 req\/s, windows b1 c1 c1 b1/);
    expect(row.cpu).toBeCloseTo(pair.ratioByCpu, 12);
  });

  it('fails the run on a lost write in the second write window and on errors in a window that is no scenario\'s result', async () => {
    const aOwn = stats(10_000);
    const results: Results = new Map<string, unknown>([['a', aOwn], ['b1', stats(5_000)], ['b0', stats(5_500)]]);
    const p1First = stats(4_000);
    results.set('p1', p1First);
    // (p1)/(a) in the durable block: (a) has its result from earlier, so both its windows here are extra.
    const a = windows('a', [stats(9_000, { errors: 2 }), stats(9_500)]);
    const p1 = { ...windows('p1', [stats(4_100)]), window: p1First };
    const p1Last = await pairs.pairWindows(results, { lead: p1, inner: a, y: 'p1', opts });
    expect(results.get('a')).toBe(aOwn);
    const p3 = windows('p3', [stats(1_900), stats(2_000, { problems: ['lost writes: 4000 PUTs acknowledged but current_version is 3999'] })]);
    await pairs.pairWindows(results, { lead: { ...windows('p1', [stats(4_200)]), window: p1Last }, inner: p3, y: 'p3', opts });
    const { code, stderr } = verdict([results]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/a window of the pair \(p1\)\/\(a\) saw 2 errors/);
    expect(stderr).toMatch(/a window of the pair \(p3\)\/\(p1\) saw 0 errors, 0 non-2xx, lost writes: 4000 PUTs acknowledged/);
  });
});
