// What every part of the bench shares: where things are, how it prints, its two error kinds.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const requireFromServer = createRequire(path.join(root, 'server', 'package.json'));
export const requireFromRoot = createRequire(path.join(root, 'package.json'));
export const DEFAULT_SERVER_MAIN = path.join(root, 'server', 'dist', 'main.js');
const truthy = (v) => /^(1|true|yes)$/i.test(String(v ?? '').trim());
export const CI = truthy(process.env.CI);

export const out = (s = '') => process.stdout.write(`${s}\n`);
export const info = (s) => out(`[bench] ${s}`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function banner(lines) {
  const width = Math.max(...lines.map((l) => l.length));
  const bar = '!'.repeat(width + 8);
  return ['', bar, ...lines.map((l) => `!!  ${l.padEnd(width)}  !!`), bar, ''].join('\n');
}

export class UsageError extends Error {}
/** An expected failure (a server would not start, a check failed): reported without a stack. */
export class BenchError extends Error {}

/** The median of the numbers among `values` (the mean of the middle two for an even count); null if none. */
export function median(values) {
  const xs = values.filter((v) => typeof v === 'number' && !Number.isNaN(v)).sort((x, y) => x - y);
  if (xs.length === 0) return null;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}
