/** Plain-text rendering: aligned columns people can read and `awk` can split. */

const GAP = '   ';

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
  for (const row of all) {
    let indent = 0;
    const rendered = row.map((cell, i) => {
      const last = i === row.length - 1;
      const [first = '', ...rest] = cell.split('\n');
      const text = [first, ...rest.map((line) => ' '.repeat(indent) + line)].join('\n');
      indent += (widths[i] ?? 0) + GAP.length;
      return last ? text : text.padEnd(widths[i] ?? 0) + GAP;
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
