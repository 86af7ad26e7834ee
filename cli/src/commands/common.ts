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
