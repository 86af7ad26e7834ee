/** `coffer setup`: writes .coffer.yaml (address, namespace, folder) for commands run in this directory tree. */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { checkNamespace, normalizeFolder } from '@coffer/sdk';
import type { Command } from 'commander';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { promptLine } from '../input.js';
import { PROJECT_FILE, type ProjectSettings } from '../project.js';
import { examples } from './common.js';

export function registerSetup(program: Command): void {
  examples(
    program
      .command('setup')
      .description(
        `write ${PROJECT_FILE} in this directory: the namespace (-n, prompted for on a terminal), the folder (--folder) and the address ` +
          '(--addr) that run, export and secret commands here and below use. Flags and COFFER_* variables still win; it holds no token (commit it)',
      )
      .option('--folder <folder/>', 'default folder for run/export (--prefix) and secret list')
      .option('--force', `replace an existing ${PROJECT_FILE}`)
      .action(async (opts: { folder?: string; force?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const file = path.resolve(PROJECT_FILE);
        let namespace = ctx.globals.namespace;
        if (!namespace && process.stdin.isTTY) namespace = (await promptLine('Namespace: ')).trim();
        if (!namespace) throw usageError('no namespace: pass -n/--namespace NAME');
        const settings: ProjectSettings = { namespace: checkNamespace(namespace) };
        if (opts.folder !== undefined) settings.folder = normalizeFolder(opts.folder);
        // Only an address given on this command line: COFFER_ADDR, a profile's or the default would be written for no reason.
        if (ctx.globals.addr && cmd.getOptionValueSourceWithGlobals('addr') === 'cli') settings.address = ctx.globals.addr;
        const { stringify } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
        const text =
          '# Coffer settings for this directory and below (coffer setup). Flags and COFFER_* variables override them.\n' +
          '# No token here: it comes from `coffer login` or COFFER_TOKEN.\n' +
          stringify(settings);
        try {
          writeFileSync(file, text, { flag: opts.force ? 'w' : 'wx', mode: 0o644 });
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error';
          throw new CliError(code === 'EEXIST' ? `${file} already exists (--force replaces it)` : `cannot write ${file} (${code})`);
        }
        ctx.print({ file, ...settings }, () => `Wrote ${file}: ${Object.entries(settings).map(([k, v]) => `${k} ${v || '(root)'}`).join(', ')}\n`);
      }),
    'coffer setup -n payments-prod --folder app/',
    'coffer setup -n payments-prod --addr https://coffer.acme.example',
    'coffer setup                      # asks for the namespace',
  );
}
