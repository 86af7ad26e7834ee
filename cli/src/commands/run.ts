/** `coffer run` and `coffer export`: a folder of secrets as environment variables. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile } from 'node:fs/promises';
import os from 'node:os';
import { checkNamespace, normalizeFolder } from '@coffer/sdk';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { MAPPING_HELP, fetchFolderEnv, readEnvFile, resolveRefs } from '../env.js';
import { json } from '../output.js';
import { examples } from './common.js';

interface FolderOptions {
  ns?: string;
  prefix?: string;
}

const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const EXPORT_FORMATS = ['dotenv', 'json', 'shell', 'github', 'gitlab'] as const;
type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** --ns, else the global -n/--namespace (COFFER_NAMESPACE). */
function namespaceOf(ctx: Context, opts: FolderOptions): string {
  return opts.ns !== undefined ? checkNamespace(opts.ns) : ctx.namespace();
}

function folderOptions(cmd: Command): Command {
  return cmd
    .option('--ns <name>', 'namespace to read (default: the global -n/--namespace)')
    .option('--prefix <folder/>', 'folder to read, recursively; names are relative to it (default: the namespace root)');
}

export function registerRun(program: Command): void {
  examples(
    folderOptions(
      program
        .command('run')
        .summary('run a command with a folder of secrets in its environment')
        .description(
          'run a command with every secret under a folder in its environment (read in one bulk request). ' +
            'The command is not started if anything cannot be read. Values in the environment or in --env-file ' +
            'that are exactly a coffer://namespace/path[#field][?version=N] reference are replaced by the value ' +
            'they name. Precedence, lowest first: the inherited environment, the folder\'s secrets, --env-file; ' +
            'references are resolved last. Signals (INT, TERM, HUP) are forwarded to the command; coffer exits ' +
            'with its exit code, or 128+N when signal N killed it. Nothing is written to disk.',
        )
        .argument('<command...>', 'the command and its arguments, after --'),
    )
      .option('--env-file <file>', 'dotenv file of extra variables (KEY=VALUE, quotes, # comments, export prefix); may hold coffer:// references')
      .option('--no-inherit', 'start from an empty environment (PATH only) instead of coffer\'s own')
      .addHelpText('after', MAPPING_HELP)
      .action(async (argv: string[], opts: FolderOptions & { envFile?: string; inherit: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const namespace = namespaceOf(ctx, opts);
        const folder = normalizeFolder(opts.prefix ?? '');
        const client = ctx.client({ auth: true });
        const fileEnv = opts.envFile !== undefined ? await readEnvFile(opts.envFile) : new Map<string, string>();

        const env = new Map<string, string>();
        const refCandidates = new Set<string>();
        if (opts.inherit) {
          for (const [key, value] of Object.entries(process.env)) {
            if (value === undefined) continue;
            env.set(key, value);
            refCandidates.add(key);
          }
        } else if (process.env.PATH !== undefined) {
          env.set('PATH', process.env.PATH);
        }
        for (const [key, value] of await fetchFolderEnv(client, namespace, folder)) {
          env.set(key, value);
          refCandidates.delete(key); // a secret's value is never read as a reference
        }
        for (const [key, value] of fileEnv) {
          env.set(key, value);
          refCandidates.add(key);
        }
        await resolveRefs(client, env, refCandidates);

        process.exitCode = await runChild(argv, Object.fromEntries(env));
      }),
    'coffer -n app run -- ./server --port 8080',
    'coffer run --ns app --prefix prod/ --env-file .env -- node index.js',
    'DATABASE_URL=coffer://app/db/url coffer -n app run -- env',
  );

  examples(
    folderOptions(
      program
        .command('export')
        .summary('print a folder of secrets as dotenv, JSON, shell or CI variables')
        .description(
          'print every secret under a folder as environment variables. --as dotenv: KEY="value" (\\ " newline escaped); ' +
            'json: one object; shell: export KEY=\'value\' lines for eval; github: appends KEY<<DELIMITER blocks to the ' +
            'file named by $GITHUB_ENV and prints ::add-mask:: for every value line; gitlab: dotenv for artifacts:reports:dotenv ' +
            '(single-line values only). --as, not --format: --format is the global table|json option.',
        ),
    )
      .addOption(new Option('--as <format>', 'output format').choices(EXPORT_FORMATS).default('dotenv'))
      .addHelpText('after', MAPPING_HELP)
      .action(async (opts: FolderOptions & { as: ExportFormat }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const namespace = namespaceOf(ctx, opts);
        const folder = normalizeFolder(opts.prefix ?? '');
        let githubEnv: string | undefined;
        if (opts.as === 'github') {
          githubEnv = process.env.GITHUB_ENV;
          if (!githubEnv) throw usageError('--as github needs $GITHUB_ENV (set by GitHub Actions) to name the file to append to');
        }
        const env = await fetchFolderEnv(ctx.client({ auth: true }), namespace, folder);
        const entries = [...env];
        switch (opts.as) {
          case 'dotenv':
            process.stdout.write(entries.map(([k, v]) => `${k}=${dotenvQuote(v)}\n`).join(''));
            break;
          case 'gitlab': {
            const multiLine = entries.find(([, v]) => /[\r\n]/.test(v));
            if (multiLine) throw new CliError(`${multiLine[0]} has a multi-line value, which GitLab dotenv reports cannot hold`);
            process.stdout.write(entries.map(([k, v]) => `${k}=${dotenvQuote(v)}\n`).join(''));
            break;
          }
          case 'json':
            process.stdout.write(json(Object.fromEntries(entries)));
            break;
          case 'shell':
            process.stdout.write(entries.map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join(''));
            break;
          case 'github': {
            // Masks first: the values are hidden from the log before any step can print them.
            const masks = entries.flatMap(([, v]) => v.split(/\r?\n|\r/).filter((line) => line.trim() !== ''));
            process.stdout.write([...new Set(masks)].map((line) => `::add-mask::${escapeCommandData(line)}\n`).join(''));
            const blocks = entries.map(([k, v]) => {
              let delimiter: string;
              do delimiter = `ghadelimiter_${randomBytes(16).toString('hex')}`;
              while (v.includes(delimiter));
              return `${k}<<${delimiter}\n${v}\n${delimiter}\n`;
            });
            try {
              await appendFile(githubEnv!, blocks.join(''), { encoding: 'utf8' });
            } catch (err) {
              throw new CliError(`cannot append to $GITHUB_ENV (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
            }
            break;
          }
        }
      }),
    'coffer -n app export --prefix prod/ > .env',
    'eval "$(coffer -n app export --as shell)"',
    'coffer -n app export --prefix ci/ --as github   # in a GitHub Actions step',
    'coffer -n app export --as gitlab > deploy.env   # artifacts: reports: dotenv: deploy.env',
  );
}

/** "value" with \ " and line breaks escaped (read back by --env-file and common dotenv parsers). */
export function dotenvQuote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r')}"`;
}

/** 'value' for POSIX shells: a ' closes the quote, is escaped and reopens it. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Workflow command data escaping, as @actions/core does (the runner decodes it). */
function escapeCommandData(value: string): string {
  return value.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/**
 * Runs the command with inherited stdio and no shell; resolves with its exit code,
 * or 128+N when signal N ended it. INT, TERM and HUP sent to coffer are passed on,
 * and coffer stays up until the command has exited (as PID 1 too: with handlers
 * installed, signals reach us and are not ignored).
 */
function runChild(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [file, ...args] = argv;
  if (!file) throw usageError('no command given: coffer run [options] -- COMMAND [ARGS...]');
  return new Promise((resolve) => {
    const child = spawn(file, args, { env, stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill(signal);
    };
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const done = (code: number) => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
      resolve(code);
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      // spawn failed (the command was never started): exit as a shell would.
      process.stderr.write(`Error: cannot run ${JSON.stringify(file)} (${err.code ?? err.message})\n`);
      done(err.code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => {
      if (code !== null) done(code);
      else done(128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
    });
  });
}
