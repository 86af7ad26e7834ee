/** `coffer run` and `coffer export`: a folder of secrets as environment variables. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { checkNamespace, normalizeFolder } from '@coffer/sdk';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { MAPPING_HELP, fetchFolderEnv, folderLabel, readEnvFile, resolveRefs, resolveRefsOffline } from '../env.js';
import { json } from '../output.js';
import { duration, examples } from './common.js';

/** How long `run --fallback` retries before using its copy (unless --retry-budget says otherwise). */
const FALLBACK_RETRY_BUDGET_MS = 2_000;

interface FolderOptions {
  ns?: string;
  prefix?: string;
  allowPartial?: boolean;
}

/** Forwarded to the command. USR1 too: Node reserves it for its inspector, which coffer does not need. */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];
/** What a terminal sends to its whole foreground process group (^C, ^\\). */
const TERMINAL_SIGNALS = new Set<NodeJS.Signals>(['SIGINT', 'SIGQUIT']);

interface RunOptions extends FolderOptions {
  envFile?: string;
  inherit: boolean;
  fallback?: string;
  fallbackMaxAge?: number;
  forwardSignals?: boolean;
}

const RUN_HELP = `
Signals:
  TERM, HUP, USR1 and USR2 sent to coffer are passed on to the command. INT and
  QUIT too, except when coffer runs on a terminal: there Ctrl-C / Ctrl-\\ already
  reach the command (same process group), and a second copy would make many
  programs skip their graceful shutdown. A second INT within the run, a command
  that moved to its own process group, or --forward-signals still get it
  forwarded (e.g. \`docker run -t\` without -i, where Docker sends INT to PID 1 only).
  COFFER_DEBUG=signals prints each forwarded signal on stderr.
  As PID 1 (container ENTRYPOINT) coffer handles and forwards signals, but Node
  cannot reap orphaned grandchildren: use \`docker run --init\` or tini when the
  command leaves daemons behind (see README).

Fallback (--fallback FILE):
  After each good fetch, the secrets are written to FILE encrypted (AES-256-GCM,
  0600, atomic rename) with a key kept apart: COFFER_FALLBACK_KEY (32 bytes,
  base64) or the 0600 file fallback.key in the config dir. When the server
  cannot be reached (network error, timeout, 502/503/504), the copy is used and
  a warning is printed on stderr; --fallback-max-age refuses a copy older than
  that. Denied (401/403), not found and other errors fail as without --fallback.
`;
const EXPORT_FORMATS = ['dotenv', 'json', 'shell', 'github', 'gitlab'] as const;
type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** --ns, else the global -n/--namespace (COFFER_NAMESPACE). */
function namespaceOf(ctx: Context, opts: FolderOptions): string {
  return opts.ns !== undefined ? checkNamespace(opts.ns) : ctx.namespace();
}

function folderOptions(cmd: Command): Command {
  return cmd
    .option('--ns <name>', 'namespace to read (default: the global -n/--namespace)')
    .option('--prefix <folder/>', 'folder to read, recursively; names are relative to it (default: .coffer.yaml\'s folder, else the namespace root)')
    .option(
      '--allow-partial',
      'go on without the secrets this token may list but not read (named on stderr); without it they fail the command (exit 3)',
    );
}

/** Said on stderr every time, so a log shows what the command got (names and counts only, never values). */
function reportCount(verb: string, count: number, namespace: string, folder: string): void {
  process.stderr.write(`coffer: ${verb} ${count} variable${count === 1 ? '' : 's'} from ${folderLabel(namespace, folder)}\n`);
}

const FOLDER_HELP = `
Missing secrets:
  Nothing is started (run) or printed (export) when the folder holds secrets
  this token may list but not read (exit 3, their paths named), or when the
  token sees no secret under the folder at all: a misspelt --prefix or an
  empty folder (exit 4). --allow-partial goes on without the unreadable ones
  and names them on stderr. Either way stderr says how many variables came
  from where ("coffer: injected 3 variables from app:prod/").
`;

export function registerRun(program: Command): void {
  examples(
    folderOptions(
      program
        .command('run')
        .summary('run a command with a folder of secrets in its environment')
        .description(
          'run a command with every secret under a folder in its environment (read in one bulk request). ' +
            'The command is not started if anything cannot be read (see Missing secrets below). Values in the environment or in --env-file ' +
            'that are exactly a coffer://namespace/path[#field][?version=N] reference are replaced by the value ' +
            'they name. Precedence, lowest first: the inherited environment, the folder\'s secrets, --env-file; ' +
            'references are resolved last. Signals are forwarded to the command (see Signals below); coffer exits ' +
            'with its exit code, or 128+N when signal N killed it. Nothing is written to disk unless --fallback is given.',
        )
        .argument('<command...>', 'the command and its arguments, after --'),
    )
      .option('--env-file <file>', 'dotenv file of extra variables (KEY=VALUE, quotes, # comments, export prefix); may hold coffer:// references')
      .option('--no-inherit', 'start from an empty environment (PATH only) instead of coffer\'s own')
      .option(
        '--fallback <file>',
        'keep an encrypted copy (0600) of every good fetch in FILE and use it, with a warning, when the server cannot be reached (never when access is denied)',
      )
      .option('--fallback-max-age <duration>', 'refuse a fallback copy older than this (30m, 12h, 7d; default: any age)', duration)
      .option('--forward-signals', 'forward SIGINT/SIGQUIT to the command even on a terminal (see below)')
      .addHelpText('after', MAPPING_HELP + FOLDER_HELP + RUN_HELP)
      .action(async (argv: string[], opts: RunOptions, cmd: Command) => {
        const ctx = Context.of(cmd);
        const namespace = namespaceOf(ctx, opts);
        const folder = normalizeFolder(ctx.folder(opts.prefix, namespace));
        if (argv.length === 0) throw usageError('no command given: coffer run [options] -- COMMAND [ARGS...]');
        const fileEnv = opts.envFile !== undefined ? await readEnvFile(opts.envFile) : new Map<string, string>();

        /** The command's environment with `folderEnv` merged in, and the names whose values may be references. */
        const build = (folderEnv: Map<string, string>) => {
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
          for (const [key, value] of folderEnv) {
            env.set(key, value);
            refCandidates.delete(key); // a secret's value is never read as a reference
          }
          for (const [key, value] of fileEnv) {
            env.set(key, value);
            refCandidates.add(key);
          }
          return { env, refCandidates };
        };

        let env: Map<string, string>;
        let injected: number;
        try {
          // With a fallback copy, an outage is not waited out (the copy is for that): a short retry budget.
          const client = ctx.client({ auth: true, ...(opts.fallback !== undefined ? { retryBudgetMs: FALLBACK_RETRY_BUDGET_MS } : {}) });
          const { env: folderEnv } = await fetchFolderEnv(client, namespace, folder, { allowPartial: opts.allowPartial === true });
          injected = folderEnv.size;
          const built = build(folderEnv);
          env = built.env;
          const refs = await resolveRefs(client, env, built.refCandidates);
          if (opts.fallback !== undefined) {
            const { saveFallback } = await import('../fallback.js');
            try {
              saveFallback(opts.fallback, { address: ctx.address(), namespace, folder }, { env: Object.fromEntries(folderEnv), refs: Object.fromEntries(refs) });
            } catch (err) {
              // The fetch worked: the command runs; only the next outage will lack a fresh copy.
              process.stderr.write(`Warning: cannot update the fallback file: ${err instanceof Error ? err.message : String(err)}\n`);
            }
          }
        } catch (err) {
          if (opts.fallback === undefined) throw err;
          const { isUnreachable, loadFallback } = await import('../fallback.js');
          if (!isUnreachable(err)) throw err;
          const { data, createdAt } = loadFallback(opts.fallback, { address: ctx.address(), namespace, folder });
          const age = Date.now() - Date.parse(createdAt);
          if (opts.fallbackMaxAge !== undefined && !(age <= opts.fallbackMaxAge)) {
            throw new CliError(
              `${err instanceof Error ? err.message : String(err)}; the fallback copy from ${createdAt} is older than --fallback-max-age`,
              EXIT.unavailable,
            );
          }
          process.stderr.write(
            `Warning: ${err instanceof Error ? err.message : String(err)}; using the fallback copy from ${createdAt} (${opts.fallback})\n`,
          );
          const built = build(new Map(Object.entries(data.env)));
          injected = Object.keys(data.env).length;
          env = built.env;
          resolveRefsOffline(env, built.refCandidates, data.refs);
        }

        reportCount('injected', injected, namespace, folder);
        process.exitCode = await runChild(argv, Object.fromEntries(env), { forwardTerminalSignals: opts.forwardSignals === true });
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
            '(single-line values only). The global --format json means --as json; other --format values are refused (choose with --as).',
        ),
    )
      .addOption(new Option('--as <format>', 'output format').choices(EXPORT_FORMATS).default('dotenv'))
      .addHelpText('after', MAPPING_HELP + FOLDER_HELP)
      .action(async (opts: FolderOptions & { as: ExportFormat }, cmd: Command) => {
        const ctx = Context.of(cmd);
        opts.as = exportFormat(cmd, opts.as);
        const namespace = namespaceOf(ctx, opts);
        const folder = normalizeFolder(ctx.folder(opts.prefix, namespace));
        let githubEnv: string | undefined;
        if (opts.as === 'github') {
          githubEnv = process.env.GITHUB_ENV;
          if (!githubEnv) throw usageError('--as github needs $GITHUB_ENV (set by GitHub Actions) to name the file to append to');
        }
        const { env } = await fetchFolderEnv(ctx.client({ auth: true }), namespace, folder, { allowPartial: opts.allowPartial === true });
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
        reportCount('exported', entries.length, namespace, folder);
      }),
    'coffer -n app export --prefix prod/ > .env',
    'eval "$(coffer -n app export --as shell)"',
    'coffer -n app export --prefix ci/ --as github   # in a GitHub Actions step',
    'coffer -n app export --as gitlab > deploy.env   # artifacts: reports: dotenv: deploy.env',
  );
}

/**
 * --as, or the global --format when given on the command line: `--format json` is
 * `--as json` (what a user of the other commands expects), and a --format export
 * has no equivalent for (table) is refused rather than silently printing dotenv.
 */
function exportFormat(cmd: Command, as: ExportFormat): ExportFormat {
  if (cmd.getOptionValueSourceWithGlobals('format') !== 'cli') return as;
  const format = String(cmd.optsWithGlobals<{ format: string }>().format);
  if (format !== 'json') {
    throw usageError(`coffer export has no --format ${format} output; choose one with --as ${EXPORT_FORMATS.join('|')}`);
  }
  if (cmd.getOptionValueSource('as') === 'cli' && as !== 'json') throw usageError(`--format json and --as ${as} disagree; give one of them`);
  return 'json';
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

/** The process group of `pid` (Linux /proc), or undefined where that cannot be read. */
function processGroup(pid: number | 'self'): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: state ppid pgrp ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[2]);
  } catch {
    return undefined;
  }
}

/**
 * Runs the command with inherited stdio and no shell; resolves with its exit code,
 * or 128+N when signal N ended it. Signals sent to coffer are passed on (see
 * RUN_HELP for INT/QUIT on a terminal), and coffer stays up until the command
 * has exited (as PID 1 too: with handlers installed, signals reach us and are not ignored).
 */
function runChild(argv: string[], env: NodeJS.ProcessEnv, options: { forwardTerminalSignals: boolean }): Promise<number> {
  const [file, ...args] = argv;
  if (!file) throw usageError('no command given: coffer run [options] -- COMMAND [ARGS...]');
  // On a terminal, ^C goes to the foreground process group, which the command shares with us.
  const onTerminal = !options.forwardTerminalSignals && (process.stdin.isTTY === true || process.stdout.isTTY === true || process.stderr.isTTY === true);
  const received = new Map<NodeJS.Signals, number>();
  // COFFER_DEBUG=signals: say on stderr what is forwarded (to see what a container runtime or terminal sends).
  const debugSignals = /(^|,)signals(,|$)/.test(process.env.COFFER_DEBUG ?? '');
  return new Promise((resolve, reject) => {
    let child: ChildProcess | undefined;
    const forward = (signal: NodeJS.Signals) => {
      if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      const count = (received.get(signal) ?? 0) + 1;
      received.set(signal, count);
      if (onTerminal && TERMINAL_SIGNALS.has(signal) && count === 1) {
        const own = processGroup('self');
        const childGroup = processGroup(child.pid);
        // Same group (or unknown): the terminal delivered it to the command already.
        if (own === undefined || childGroup === undefined || own === childGroup) return;
      }
      if (debugSignals) process.stderr.write(`coffer: forwarding ${signal} to ${child.pid}\n`);
      child.kill(signal);
    };
    // Handlers before the spawn: installed after it, a signal arriving while coffer is preempted
    // between the two (a loaded machine) met the default action, which killed coffer and left the
    // command running, holding the caller's pipes (seen as a rare hang in the e2e tests). Handlers
    // run from the event loop, so by the time one runs, `child` is set.
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const done = (code: number) => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
      resolve(code);
    };
    try {
      child = spawn(file, args, { env, stdio: 'inherit' });
    } catch (err) {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
      reject(err);
      return;
    }
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
