/** `coffer secret put|get|list|history|rollback|delete|undelete|destroy|purge`. */
import { checkSecretPath, isSecretRef, normalizeFolder, parseSecretRef, type SecretRef, type SecretType, type VersionInfo, type WriteResult } from '@coffer/sdk';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { collectData } from '../input.js';
import { fields, table } from '../output.js';
import { examples, integer, plural, versionList } from './common.js';

const SECRET_TYPES: SecretType[] = ['generic', 'password', 'token', 'certificate', 'key'];
const PATH_HELP = 'secret path (with -n NAMESPACE) or coffer://namespace/path';

/**
 * The secret a PATH argument names: a coffer:// reference carries its own namespace;
 * a plain path takes --namespace. Only `get` reads a reference's #field and ?version.
 */
function target(ctx: Context, arg: string, allowSelectors = false): SecretRef {
  if (!isSecretRef(arg)) return { namespace: ctx.namespace(), path: checkSecretPath(arg) };
  const ref = parseSecretRef(arg);
  if (!allowSelectors && (ref.field !== undefined || ref.version !== undefined)) {
    throw usageError('#field and ?version=N in a reference apply to `coffer secret get` only');
  }
  return ref;
}

const where = (t: { namespace: string; path: string }) => `${t.namespace}:${t.path}`;

function renderWrite(w: WriteResult): string {
  return fields([
    ['Namespace', w.namespace],
    ['Path', w.path],
    ['Version', w.version],
    ['Created', w.created_at],
  ]);
}

function versionState(v: VersionInfo, current: number): string {
  const state = [v.version === current ? 'current' : '', v.destroyed_at ? 'destroyed' : v.deleted_at ? 'deleted' : ''];
  return state.filter(Boolean).join(', ');
}

export function registerSecrets(program: Command): void {
  const secret = examples(
    program.command('secret').description('read and write secrets (values never need to be on the command line)'),
    'coffer -n payments-prod secret put db/password password=-',
    'coffer -n payments-prod secret get db/password --field password',
  );

  examples(
    secret
      .command('put')
      .summary('write a new version of a secret')
      .description(
        'write a new version of a secret. KEY=VALUE takes the value literally; KEY=@FILE reads a file exactly; ' +
          'KEY=- reads stdin (minus one final newline; prompted for, unechoed, on a terminal)',
      )
      .argument('<path>', PATH_HELP)
      .argument('[data...]', 'KEY=VALUE, KEY=@FILE or KEY=-')
      .addOption(new Option('--type <type>', 'secret type, checked by the server').choices(SECRET_TYPES))
      .option('--cas <version>', 'check-and-set: write only if VERSION is current (0: only if new)', integer(0))
      .option('--data-file <file>', 'JSON object of string values ("-" for stdin); KEY=... arguments override it')
      .action(async (pathArg: string, pairs: string[], opts: { type?: SecretType; cas?: number; dataFile?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const t = target(ctx, pathArg);
        const client = ctx.client({ auth: true }); // before reading stdin: a missing token fails without waiting for input
        const data = await collectData(pairs, opts.dataFile);
        const result = await client.secrets.put(t.namespace, t.path, data, { type: opts.type, cas: opts.cas });
        ctx.print(result, () => renderWrite(result));
      }),
    'echo -n "$DB_PASSWORD" | coffer -n app secret put db/password password=- --type password',
    'coffer -n app secret put tls/api certificate=@api.crt private_key=@api.key --type certificate',
    'coffer -n app secret put config/flags --data-file flags.json --cas 3',
  );

  examples(
    secret
      .command('get')
      .summary('read a secret, or one field of it')
      .description('read a secret (the latest version unless --version); --field prints one raw value, for scripts')
      .argument('<path>', `${PATH_HELP}[#field][?version=N]`)
      .option('--version <n>', 'read this version', integer(1))
      .option('--field <name>', 'print only this field\'s value, exactly (no newline unless on a terminal)')
      .action(async (pathArg: string, opts: { version?: number; field?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const t = target(ctx, pathArg, true);
        const field = opts.field ?? t.field;
        const secret = await ctx.client({ auth: true }).secrets.get(t.namespace, t.path, { version: opts.version ?? t.version });
        if (field !== undefined) {
          const value = secret.data[field];
          if (value === undefined) {
            const names = Object.keys(secret.data).join(', ');
            throw new CliError(`${where(t)} version ${secret.version} has no field "${field}" (fields: ${names})`, EXIT.notFound, 'not_found');
          }
          process.stdout.write(process.stdout.isTTY ? `${value}\n` : value);
          return;
        }
        ctx.print(secret, () => {
          const metadata = Object.entries(secret.metadata).map(([k, v]) => `${k}=${v}`).join('\n');
          const head = fields([
            ['Namespace', secret.namespace],
            ['Path', secret.path],
            ['Version', secret.version],
            ['Type', secret.type],
            ['Created', secret.created_at],
            ['Metadata', metadata],
          ]);
          return `${head}\n${table(Object.entries(secret.data), ['FIELD', 'VALUE'])}`;
        });
      }),
    'coffer -n app secret get db/password',
    'coffer -n app secret get db/password --version 2 --format json',
    'PGPASSWORD="$(coffer secret get coffer://app/db/password#password)" psql ...',
  );

  examples(
    secret
      .command('list')
      .summary('list a folder')
      .description('list a folder: its secrets and sub-folders (ending in "/"), or with --recursive every secret under it')
      .argument('[folder]', 'folder path; when absent, .coffer.yaml\'s folder, else the namespace root')
      .option('-r, --recursive', 'every secret path under the folder')
      .action(async (folderArg: string | undefined, opts: { recursive?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const namespace = ctx.namespace();
        const folder = ctx.folder(folderArg, namespace);
        const normalized = normalizeFolder(folder);
        const keys: string[] = [];
        for await (const key of ctx.client({ auth: true }).secrets.listAll(namespace, folder, { recursive: opts.recursive })) keys.push(key);
        // All pages merged into one answer of the server's shape.
        ctx.print({ namespace, folder: normalized, keys, next_cursor: null }, () => keys.map((k) => `${k}\n`).join(''));
        if (!keys.length && ctx.globals.format === 'table') process.stderr.write(`nothing under ${namespace}:${normalized || '/'}\n`);
      }),
    'coffer -n app secret list',
    'coffer -n app secret list db/ --recursive',
  );

  examples(
    secret
      .command('history')
      .description('list the versions of a secret, newest first')
      .argument('<path>', PATH_HELP)
      .action(async (pathArg: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const t = target(ctx, pathArg);
        const history = await ctx.client({ auth: true }).secrets.history(t.namespace, t.path);
        ctx.print(history, () =>
          table(
            history.versions.map((v) => [String(v.version), v.type, v.created_at, versionState(v, history.current_version)]),
            ['VERSION', 'TYPE', 'CREATED', 'STATE'],
          ),
        );
      }),
    'coffer -n app secret history db/password',
  );

  examples(
    secret
      .command('rollback')
      .description('write an earlier version\'s content as a new latest version')
      .argument('<path>', PATH_HELP)
      .requiredOption('--version <n>', 'the version to restore', integer(1))
      .action(async (pathArg: string, opts: { version: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const t = target(ctx, pathArg);
        const result = await ctx.client({ auth: true }).secrets.rollback(t.namespace, t.path, opts.version);
        ctx.print(result, () => renderWrite(result));
      }),
    'coffer -n app secret rollback db/password --version 2',
  );

  const versionCommands = [
    { name: 'delete', verb: 'Deleted', about: 'soft-delete versions (default: the latest); undelete restores them' },
    { name: 'undelete', verb: 'Undeleted', about: 'restore soft-deleted versions (default: the latest)' },
    { name: 'destroy', verb: 'Destroyed', about: 'erase versions for good (default: the latest)' },
  ] as const;
  for (const { name, verb, about } of versionCommands) {
    examples(
      secret
        .command(name)
        .description(about)
        .argument('<path>', PATH_HELP)
        .option('--versions <list>', 'comma-separated version numbers', versionList)
        .action(async (pathArg: string, opts: { versions?: number[] }, cmd: Command) => {
          const ctx = Context.of(cmd);
          const t = target(ctx, pathArg);
          const result = await ctx.client({ auth: true }).secrets[name](t.namespace, t.path, opts.versions);
          const list = result.versions.join(', ');
          ctx.print(result, () => `${verb} ${result.versions.length === 1 ? 'version' : 'versions'} ${list} of ${where(t)}\n`);
        }),
      `coffer -n app secret ${name} db/password`,
      `coffer -n app secret ${name} db/password --versions 1,2`,
    );
  }

  examples(
    secret
      .command('purge')
      .description('remove a secret with all its versions (irreversible)')
      .argument('<path>', PATH_HELP)
      .action(async (pathArg: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const t = target(ctx, pathArg);
        const result = await ctx.client({ auth: true }).secrets.purge(t.namespace, t.path);
        ctx.print(result, () => `Purged ${where(t)} (${plural(result.versions_removed, 'version')} removed)\n`);
      }),
    'coffer -n app secret purge old/api-key',
  );
}
