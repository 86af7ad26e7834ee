// `npm run bench -- --rounds N` for real: two rounds of (a), (b1) and (b0), each on its own
// servers and PostgreSQL cluster (windows b1 a a b1 b0 b0 b1), at the shortest settings (a smoke of the merging, not a
// measurement). The JSON must hold both rounds' raw results, and its merged figures must be the
// medians of those rounds' own figures.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeIfPostgres } from '../helpers/env.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface ScenarioJson {
  id: string;
  rps: number;
  p99: number;
  roundsRps?: number[];
}
interface PairJson {
  order: string;
  xRps: number[];
  yRps: number[];
  ratio: number;
}
interface BenchJson {
  rounds: number;
  ok: boolean;
  failures: string[];
  roundResults: Array<{ round: number; scenarios: ScenarioJson[]; auditPair: { cost: number } | null; pairs: Record<string, PairJson> }>;
  scenarios: ScenarioJson[];
  ratios: Record<string, number | null>;
  auditPair: { cost: number } | null;
  pairs: Record<string, { ratio: number }>;
  aim: { ratio: number; p99Ms: number };
  issue13: Array<{ figure: string; value: number | null; rounds?: Array<number | null> }>;
}

const median2 = (x: number, y: number) => (x + y) / 2;

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'bench.mjs'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describeIfPostgres('bench --rounds', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-rounds-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs two rounds on fresh servers and reports the medians of their figures', async () => {
    const json = path.join(dir, 'bench.json');
    const args = ['--quick', '--rounds', '2', '--only', 'a,b1,b0', '--duration', '1', '--warmup', '1', '--warmup-requests', '0', '--connections', '4', '--json', json];
    const run = await runBench(args);
    expect({ code: run.code, stderr: run.code === 0 ? '' : run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/quick \(CI smoke\), 2 rounds/);
    expect(run.stdout).toMatch(/round 1 of 2[\s\S]*round 2 of 2/);
    // Each round starts its own cluster.
    expect(run.stdout.match(/PostgreSQL .* ready \(database coffer_bench\)/g)).toHaveLength(2);

    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchJson;
    expect(report.rounds).toBe(2);
    expect(report.ok).toBe(true);
    expect(report.roundResults.map((r) => r.scenarios.map((s) => s.id).sort())).toEqual([
      ['a', 'b0', 'b1'],
      ['a', 'b0', 'b1'],
    ]);
    const get = (scenarios: ScenarioJson[], id: string) => scenarios.find((s) => s.id === id)!;
    const perRound = report.roundResults.map((r) => ({ a: get(r.scenarios, 'a'), b1: get(r.scenarios, 'b1'), pair: r.auditPair, b1a: r.pairs['b1/a']! }));
    const [r1, r2] = perRound as [(typeof perRound)[0], (typeof perRound)[0]];

    // The table's row: a real round's stats, with both rounds' req/s beside them.
    const b1 = get(report.scenarios, 'b1');
    expect(b1.roundsRps).toEqual([r1.b1.rps, r2.b1.rps]);
    expect(b1.rps).toBe(Math.min(r1.b1.rps, r2.b1.rps));

    // (b1)/(a) in windows b1 a a b1 of one round: the first two are the scenarios' own results.
    for (const r of [r1, r2]) {
      expect(r.b1a.order).toBe('b1 a a b1');
      expect([r.b1a.yRps[0], r.b1a.xRps[0]]).toEqual([r.b1.rps, r.a.rps]);
      expect(r.b1a.ratio).toBeCloseTo((r.b1a.yRps[0]! + r.b1a.yRps[1]!) / (r.b1a.xRps[0]! + r.b1a.xRps[1]!), 10);
    }
    // Issue 13's figures and the ratios: medians of the rounds' own ratios.
    const b1OverA = median2(r1.b1a.ratio, r2.b1a.ratio);
    expect(report.pairs['b1/a']!.ratio).toBeCloseTo(b1OverA, 10);
    const figure = (prefix: string) => report.issue13.find((f) => f.figure.startsWith(prefix))!;
    expect(figure('(b1) read, PostgreSQL / (a)').value).toBeCloseTo(b1OverA, 10);
    expect(figure('(b1) read, PostgreSQL / (a)').rounds).toHaveLength(2);
    expect(report.ratios.b1_over_a).toBeCloseTo(b1OverA, 10);
    expect(report.aim.ratio).toBeCloseTo(b1OverA, 10);
    expect(figure('(b1) p99').value).toBeCloseTo(median2(r1.b1.p99, r2.b1.p99), 10);
    expect(report.aim.p99Ms).toBeCloseTo(median2(r1.b1.p99, r2.b1.p99), 10);
    const audit = median2(r1.pair!.cost, r2.pair!.cost);
    expect(figure('audit cost').value).toBeCloseTo(audit, 10);
    expect(report.auditPair!.cost).toBeCloseTo(audit, 10);
    expect(run.stdout).toMatch(/median of 2 rounds/);
  }, 280_000);
});
