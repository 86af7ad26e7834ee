// Every option of every `coffer` subcommand reaches that subcommand when given after its name.
// commander lets a command claim its own options wherever they appear, so a parent declaring the
// same flag as a child swallows it (issue 12: `operator rotate-root verify --shares-file F` failed
// with "no new shares given" because rotate-root has --shares-file too).

import { buildProgram } from '@coffer/cli/program';

type Command = Awaited<ReturnType<typeof buildProgram>>;
type Option = Command['options'][number];

function all(cmd: Command, prefix: string[] = []): Array<[string[], Command]> {
  return cmd.commands
    .filter((c) => c.name() !== 'help')
    .flatMap((c) => [[[...prefix, c.name()], c] as [string[], Command], ...all(c, [...prefix, c.name()])]);
}

function find(program: Command, path: string[]): Command {
  let cmd = program;
  for (const name of path) cmd = cmd.commands.find((c) => c.name() === name)!;
  return cmd;
}

/** A raw value the parser of an option or argument accepts, and what it parses to. */
function sample(item: { argChoices?: string[]; parseArg?: <T>(value: string, previous: T) => T; defaultValue?: unknown }): { raw: string; parsed: unknown } {
  if (item.argChoices?.length) return { raw: item.argChoices[0]!, parsed: item.argChoices[0]! };
  if (!item.parseArg) return { raw: 'x', parsed: 'x' };
  // A fixed time before durations: --since 30m parses to a moment that moves.
  for (const raw of ['1', '2026-01-02T03:04:05.000Z', '30m', 'x', 'a=b', 'read']) {
    try {
      return { raw, parsed: item.parseArg(raw, item.defaultValue) };
    } catch {
      // not this kind of value: try the next
    }
  }
  throw new Error('no sample value for a parser');
}

function optionArgs(option: Option, flag: string): { argv: string[]; expected: unknown } {
  if (option.negate) return { argv: [flag], expected: false };
  if (option.isBoolean()) return { argv: [flag], expected: true };
  const { raw, parsed } = sample(option);
  return { argv: [flag, raw], expected: option.variadic && !option.parseArg ? [raw] : parsed };
}

async function parseFor(path: string[], argv: string[]): Promise<Command> {
  const program = await buildProgram([]);
  const target = find(program, path);
  for (const [, cmd] of [[[], program] as [string[], Command], ...all(program)]) {
    cmd.configureOutput({ writeOut: () => {}, writeErr: () => {} });
  }
  target.action(() => {}); // parse only: nothing is sent anywhere
  await program.parseAsync(['node', 'coffer', ...path, ...argv]);
  return target;
}

it('no parent command swallows an option of its subcommand', async () => {
  const program = await buildProgram([]);
  const commands = all(program);
  expect(commands.length).toBeGreaterThan(40);
  const wrong: string[] = [];
  let checked = 0;
  for (const [path, cmd] of commands) {
    const args = cmd.registeredArguments.filter((a) => a.required).map((a) => sample(a).raw);
    for (const option of cmd.options) {
      const others = cmd.options.filter((o) => o !== option && o.mandatory).flatMap((o) => optionArgs(o, o.long ?? o.short!).argv);
      for (const flag of [option.long, option.short].filter((f): f is string => f !== undefined)) {
        const { argv, expected } = optionArgs(option, flag);
        const line = `coffer ${[...path, ...args, ...others, ...argv].join(' ')}`;
        try {
          const parsed = await parseFor(path, [...args, ...others, ...argv]);
          const got = parsed.opts()[option.attributeName()];
          if (JSON.stringify(got) !== JSON.stringify(expected)) wrong.push(`${line}: ${option.attributeName()} = ${JSON.stringify(got)}`);
        } catch (err) {
          wrong.push(`${line}: ${err instanceof Error ? err.message : String(err)}`);
        }
        checked++;
      }
    }
  }
  expect(wrong).toEqual([]);
  expect(checked).toBeGreaterThan(100);
});

it('rotate-root verify gets its own --shares-file; rotate-root keeps its own before verify', async () => {
  const verify = await parseFor(['operator', 'rotate-root', 'verify'], ['--shares-file', 'new.txt']);
  expect(verify.opts().sharesFile).toBe('new.txt');
  expect(verify.parent!.opts().sharesFile).toBeUndefined();
  const rotate = await parseFor(['operator', 'rotate-root'], ['--shares-file', 'current.txt']);
  expect(rotate.opts().sharesFile).toBe('current.txt');
});
