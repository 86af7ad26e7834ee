/** The `coffer` command tree and its global options. */
import { Command, Option } from 'commander';
import { examples, integer } from './commands/common.js';
import { CLI_VERSION } from './context.js';

type Register = (program: Command) => void;

/**
 * Command modules, loaded on demand: `coffer run` should not pay for parsing
 * the audit or admin modules (startup time is most of a `coffer run -- true`).
 * Keys are the top-level command names each module registers, in help order.
 */
const MODULES: Array<[string[], () => Promise<Register>]> = [
  [['status', 'operator'], async () => (await import('./commands/sys.js')).registerSys],
  [['login', 'logout', 'token'], async () => (await import('./commands/login.js')).registerLogin],
  [['config'], async () => (await import('./commands/config.js')).registerConfig],
  [['setup'], async () => (await import('./commands/setup.js')).registerSetup],
  [['ns'], async () => (await import('./commands/ns.js')).registerNamespaces],
  [['secret'], async () => (await import('./commands/secret.js')).registerSecrets],
  [['run', 'export'], async () => (await import('./commands/run.js')).registerRun],
  [['audit'], async () => (await import('./commands/audit.js')).registerAudit],
  [['policy', 'user', 'approle', 'jwt', 'cert'], async () => (await import('./commands/admin.js')).registerAdmin],
  [['byok', 'escrow'], async () => (await import('./commands/keys.js')).registerKeys],
  [['kms'], async () => (await import('./commands/kms.js')).registerKms],
  [['completion'], async () => (await import('./commands/completion.js')).registerCompletion],
];

/** Global options that take a value, to find the command name in argv. */
const VALUED_GLOBALS = new Set(['--addr', '--token', '--format', '-n', '--namespace', '--profile', '--max-retries', '--retry-budget']);

/** The first word of argv that is not a global option or its value (the command name), if any. */
export function commandName(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') return undefined;
    if (arg.startsWith('-')) {
      if (VALUED_GLOBALS.has(arg)) i++;
      continue;
    }
    return arg;
  }
  return undefined;
}

/**
 * `--version` before any command name (`coffer --version`, `coffer --addr X --version`).
 * Not a program option: commander gives program options precedence wherever they
 * appear, and `--version N` belongs to `secret get` and others after their name.
 */
export function asksVersion(args: readonly string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--version') return true;
    if (arg === '--' || !arg.startsWith('-')) return false;
    if (VALUED_GLOBALS.has(arg)) i++;
  }
  return false;
}

/** The program with the module of the command in `args` only; with every module for help, completion and typos. */
export async function buildProgram(args: readonly string[] = []): Promise<Command> {
  const program = baseProgram();
  const name = commandName(args);
  if (name === 'version') return program;
  const wanted = MODULES.filter(([names]) => name !== undefined && names.includes(name) && name !== 'completion');
  for (const [, load] of wanted.length ? wanted : MODULES) (await load())(program);
  for (const cmd of program.commands) handOnSharedOptions(cmd);
  return program;
}

/**
 * commander lets a command take its own options wherever they appear, also after a
 * subcommand's name: `operator rotate-root verify --shares-file F` gave F to rotate-root,
 * and verify saw none (issue 12). A parent's action never runs when a subcommand does, so
 * a value the parent took for an option the subcommand declares too is the subcommand's:
 * it is handed on before the subcommand parses. (Program options are global on purpose and
 * stay where they are; `audit tail -n` is handled in commands/audit.ts.)
 */
function handOnSharedOptions(parent: Command): void {
  for (const sub of parent.commands) handOnSharedOptions(sub);
  const shared = parent.options.filter((o) => o.long !== undefined && parent.commands.some((sub) => sub.options.some((s) => s.long === o.long)));
  if (shared.length === 0) return;
  parent.hook('preSubcommand', (_parent, sub) => {
    for (const option of shared) {
      const own = sub.options.find((s) => s.long === option.long);
      const key = option.attributeName();
      if (!own || parent.getOptionValueSource(key) !== 'cli') continue;
      if (sub.getOptionValueSource(own.attributeName()) !== 'cli') sub.setOptionValueWithSource(own.attributeName(), parent.getOptionValue(key), 'cli');
      parent.setOptionValueWithSource(key, undefined, 'default');
    }
  });
}

function baseProgram(): Command {
  const program = new Command('coffer')
    .description('Command-line client for the Coffer secrets vault')
    // Settings first: subcommands copy them when created.
    .exitOverride() // errors come back to run() for our exit codes instead of process.exit(1)
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    .addOption(new Option('--addr <url>', 'server address (default: the profile\'s, else http://127.0.0.1:8200)').env('COFFER_ADDR'))
    .addOption(
      new Option('--token <token>', `token (default: the profile's token file, written by coffer login); prefer the env var, arguments show in ps`).env(
        'COFFER_TOKEN',
      ),
    )
    .addOption(
      new Option('--max-retries <n>', 'most retries of a request the server could not answer (default 30; see --retry-budget)').env('COFFER_MAX_RETRIES').argParser(integer(0)),
    )
    .addOption(
      new Option('--retry-budget <seconds>', 'retry for at most this long, to ride out a failover (default 30; 0 fails at once)').env('COFFER_RETRY_BUDGET').argParser(integer(0)),
    )
    .addOption(new Option('--profile <name>', 'config profile (default: default_profile of the config file, else "default")').env('COFFER_PROFILE'))
    .addOption(new Option('--format <format>', 'output format: table (for people; bold on a terminal unless NO_COLOR), json or yaml').choices(['table', 'json', 'yaml']).default('table'))
    // Wherever it appears, except after `audit tail`, whose -n is its line count (see commands/audit.ts).
    .addOption(new Option('-n, --namespace <name>', 'namespace for secret and kms commands (a filter for audit commands)').env('COFFER_NAMESPACE'))
    // -V only: `--version` is `secret get`'s option, and commander would give it to the program
    // (main.ts answers a --version before the command name, see asksVersion).
    .version(CLI_VERSION, '-V', 'print the CLI version (also --version before any command, or `coffer version`)');

  examples(
    program
      .command('version')
      .description('print the CLI version')
      .action((_opts: object, cmd: Command) => {
        const { format } = cmd.optsWithGlobals<{ format: string }>();
        process.stdout.write(format === 'json' ? `${JSON.stringify({ version: CLI_VERSION })}\n` : `${CLI_VERSION}\n`);
      }),
    'coffer version',
    'coffer --version',
  );

  examples(
    program,
    'export COFFER_ADDR=http://127.0.0.1:8200 COFFER_TOKEN=...',
    'coffer status',
    'coffer ns create app',
    'echo -n "$VALUE" | coffer -n app secret put db/password password=-',
    'coffer -n app secret get db/password --format json',
  );

  program.addHelpText(
    'after',
    `
Exit codes: 0 ok, 1 error, 2 usage, 3 denied (no/bad token, 401/403), 4 not found,
5 sealed or unavailable (503, no answer); \`coffer run\` exits with its command's code.
Settings: flags > COFFER_ADDR / COFFER_TOKEN / COFFER_NAMESPACE > .coffer.yaml (coffer setup) > profile (coffer config) > defaults.
`,
  );
  return program;
}
