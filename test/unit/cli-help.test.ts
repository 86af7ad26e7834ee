// Every command of the `coffer` tree has --help with an Examples section.

import { buildProgram } from '@coffer/cli/program';

type Command = Awaited<ReturnType<typeof buildProgram>>;

function all(cmd: Command, prefix: string[] = []): Array<[string, Command]> {
  return cmd.commands
    .filter((c) => c.name() !== 'help')
    .flatMap((c) => [[[...prefix, c.name()].join(' '), c] as [string, Command], ...all(c, [...prefix, c.name()])]);
}

it('every command has examples in its --help', async () => {
  const program = await buildProgram([]);
  const commands = all(program);
  expect(commands.length).toBeGreaterThan(40);
  const missing: string[] = [];
  for (const [name, cmd] of commands) {
    let text = '';
    cmd.configureOutput({ writeOut: (s: string) => (text += s), writeErr: (s: string) => (text += s) });
    cmd.outputHelp();
    if (!text.includes('Examples:')) missing.push(name);
  }
  expect(missing).toEqual([]);
});
