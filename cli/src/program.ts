/** The `coffer` command tree and its global options. */
import { Command, Option } from 'commander';
import { registerAudit } from './commands/audit.js';
import { registerLogin } from './commands/login.js';
import { registerNamespaces } from './commands/ns.js';
import { registerRun } from './commands/run.js';
import { registerSecrets } from './commands/secret.js';
import { registerSys } from './commands/sys.js';
import { examples } from './commands/common.js';
import { CLI_VERSION } from './context.js';

export function buildProgram(): Command {
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
    .addOption(new Option('-n, --namespace <name>', 'namespace for secret commands (a filter for audit commands)').env('COFFER_NAMESPACE'))
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

  registerSys(program);
  registerLogin(program);
  registerNamespaces(program);
  registerSecrets(program);
  registerAudit(program);
  registerRun(program);
  return program;
}
