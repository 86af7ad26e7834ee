/**
 * Plain-text rendering: aligned columns people can read and `awk` can split;
 * on a terminal, headers and labels in bold (never when piped, or with NO_COLOR).
 * JSON and YAML for scripts.
 */
import { createRequire } from 'node:module';

const GAP = '   ';

/** Styles only for a person at a terminal: not in a pipe or file, not with NO_COLOR (no-color.org) or TERM=dumb. */
export function useColor(stream: { isTTY?: boolean } = process.stdout): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR && process.env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && process.env.TERM !== 'dumb';
}

const sgr = (open: number, close: number) => (text: string) => (useColor() && text ? `\u001b[${open}m${text}\u001b[${close}m` : text);
export const bold = sgr(1, 22);
export const dim = sgr(2, 22);
export const red = sgr(31, 39);
export const green = sgr(32, 39);
export const yellow = sgr(33, 39);

/** Rows of cells as aligned columns; a value's extra lines are indented under its column. */
export function table(rows: string[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows;
  const widths: number[] = [];
  for (const row of all) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, longestLine(cell));
    });
  }
  const lines: string[] = [];
  for (const [r, row] of all.entries()) {
    let indent = 0;
    const rendered = row.map((cell, i) => {
      const last = i === row.length - 1;
      const [first = '', ...rest] = cell.split('\n');
      const text = [first, ...rest.map((line) => ' '.repeat(indent) + line)].join('\n');
      indent += (widths[i] ?? 0) + GAP.length;
      // Styled after padding: escape codes take no columns.
      const styled = (t: string) => (header && r === 0 ? bold(t) : !header && i === 0 && row.length > 1 ? bold(t) : t);
      return last ? styled(text.trimEnd()) : styled(text.padEnd(widths[i] ?? 0)) + GAP;
    });
    lines.push(rendered.join('').trimEnd());
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** Label/value pairs, e.g. the fields of one object. */
export function fields(pairs: Array<[string, string | number | boolean | null | undefined]>): string {
  return table(pairs.map(([label, value]) => [label, value === null || value === undefined || value === '' ? '-' : String(value)]));
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function longestLine(text: string): number {
  return Math.max(...text.split('\n').map((l) => l.length));
}

/** YAML (block style) of a JSON value; the `yaml` package is loaded only when asked for. */
export function yaml(value: unknown): string {
  const require = createRequire(import.meta.url);
  const { stringify } = require('yaml') as typeof import('yaml');
  // JSON first: the same data as --format json (dates as strings, no undefined fields).
  return stringify(JSON.parse(JSON.stringify(value ?? null)), { lineWidth: 0 });
}

/** [#########-----------]  45%: a bar for a terminal (green when colour is on). */
export function progressBar(done: number, total: number, width = 30): string {
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(fraction * width);
  return `[${green('#'.repeat(filled))}${'-'.repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
}
