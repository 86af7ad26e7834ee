/** Small helpers shared by the command modules. */
import { InvalidArgumentError, type Command } from 'commander';

/** Appends an Examples section to a command's --help. */
export function examples(cmd: Command, ...lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

/** commander argument parser for integers >= min; commander turns the error into a usage error. */
export function integer(min: number): (value: string) => number {
  return (value) => {
    if (!/^\d{1,10}$/.test(value) || Number(value) < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return Number(value);
  };
}

/** "1,2,5" → [1, 2, 5] */
export function versionList(value: string): number[] {
  const parts = value.split(',').map((v) => v.trim());
  if (parts.some((v) => !/^[1-9]\d{0,9}$/.test(v))) throw new InvalidArgumentError('expected version numbers like 1,2,5');
  return parts.map(Number);
}

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** commander argument parser for durations like 30s, 15m, 2h, 7d, 2w → milliseconds. */
export function duration(value: string): number {
  const m = /^(\d{1,6})([smhdw])$/.exec(value);
  if (!m || Number(m[1]) === 0) throw new InvalidArgumentError('expected a duration like 30s, 15m, 2h, 7d or 2w');
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}
