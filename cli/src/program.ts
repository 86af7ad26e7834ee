/** The `coffer` command tree and its global options. */
import { Command, Option } from 'commander';
import { examples } from './commands/common.js';
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
const VALUED_GLOBALS = new Set(['--addr', '--token', '--format', '-n', '--namespace', '--profile']);

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

/** The program with the module of the command in `args` only; with every module for help, completion and typos. */
export async function buildProgram(args: readonly string[] = []): Promise<Command> {
  const program = baseProgram();
  const name = commandName(args);
  const wanted = MODULES.filter(([names]) => name !== undefined && names.includes(name) && name !== 'completion');
  for (const [, load] of wanted.length ? wanted : MODULES) (await load())(program);
  return program;
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
    .addOption(new Option('--profile <name>', 'config profile (default: default_profile of the config file, else "default")').env('COFFER_PROFILE'))
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    // Wherever it appears, except after `audit tail`, whose -n is its line count (see commands/audit.ts).
    .addOption(new Option('-n, --namespace <name>', 'namespace for secret and kms commands (a filter for audit commands)').env('COFFER_NAMESPACE'))
    // -V only: `--version` is `secret get`'s option, and commander would give it to the program.
    .version(CLI_VERSION, '-V', 'print the CLI version');

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
Settings: flags > COFFER_ADDR / COFFER_TOKEN / COFFER_NAMESPACE > profile (coffer config) > defaults.
`,
  );
  return program;
}
