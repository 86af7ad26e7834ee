/** `coffer login token|userpass|approle|oidc`, `coffer logout`, `coffer token lookup|renew|revoke|capabilities|create`. */
import { readFile } from 'node:fs/promises';
import { DEFAULT_AUDIENCE, DEFAULT_ID_TOKEN_ENV, type AuthInfo, type CofferClient, type TokenInfo } from '@coffer/sdk';
import type { Command } from 'commander';
import { readTokenFile, removeFile, writeTokenFile } from '../config.js';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { promptHidden, promptLine, readStdin } from '../input.js';
import { fields } from '../output.js';
import { examples, integer } from './common.js';

interface StoreOptions {
  tokenOnly?: boolean;
}

/** The auth block without the token itself (for table and JSON output). */
function publicAuth(auth: AuthInfo): Omit<AuthInfo, 'client_token'> {
  const { client_token: _token, ...rest } = auth;
  return rest;
}

function renderAuth(auth: Omit<AuthInfo, 'client_token'>, tokenFile?: string): string {
  return fields([
    ['Identity', auth.identity],
    ['Display name', auth.display_name],
    ['Policies', auth.policies.join(', ')],
    ['Accessor', auth.accessor],
    ['Expires', auth.expires_at ?? 'never'],
    ['Renewable', auth.renewable],
    ['Max expiry', auth.max_expires_at],
    ...(tokenFile ? ([['Token file', tokenFile]] as Array<[string, string]>) : []),
  ]);
}

function renderTokenInfo(info: TokenInfo, tokenFile?: string): string {
  return fields([
    ['Identity', info.identity],
    ['Display name', info.display_name],
    ['Policies', info.policies.join(', ')],
    ['Accessor', info.accessor],
    ['Created', info.created_at],
    ['Expires', info.expires_at ?? 'never'],
    ['Renewable', info.renewable],
    ['Max expiry', info.max_expires_at],
    ...(tokenFile ? ([['Token file', tokenFile]] as Array<[string, string]>) : []),
  ]);
}

/**
 * After a login: --token-only prints the token (for `export COFFER_TOKEN=$(...)`)
 * and stores nothing; otherwise the token goes to the profile's token file (0600)
 * and the rest of the auth block is shown.
 */
function finishLogin(ctx: Context, auth: AuthInfo, opts: StoreOptions): void {
  if (opts.tokenOnly) {
    process.stdout.write(`${auth.client_token}\n`);
    return;
  }
  const file = ctx.ensureProfile().tokenFile;
  writeTokenFile(file, auth.client_token);
  ctx.print({ ...publicAuth(auth), token_file: file }, () => renderAuth(auth, file));
  if (ctx.globals.token) {
    process.stderr.write('Warning: --token/COFFER_TOKEN is set and takes precedence over the token file just written\n');
  }
}

/** A secret from a file ('-' = stdin), else an env var, else stdin (prompted for, unechoed, on a terminal). */
async function secretInput(what: string, file: string | undefined, envVar: string): Promise<string> {
  let value: string;
  if (file === '-') value = await readStdin();
  else if (file !== undefined) {
    try {
      value = await readFile(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read the file given for the ${what} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
  } else if (process.env[envVar]) value = process.env[envVar]!;
  else if (process.stdin.isTTY) value = await promptHidden(`${what[0]!.toUpperCase()}${what.slice(1)}: `);
  else value = await readStdin();
  value = value.replace(/\r?\n$/, '');
  if (!value) throw usageError(`no ${what} given`);
  return value;
}

function loginContext(cmd: Command): Context {
  const ctx = Context.of(cmd);
  ctx.allowMissingProfile = true;
  return ctx;
}

function storeOption(cmd: Command): Command {
  return cmd.option('--token-only', 'print the token on stdout instead of storing it in the token file');
}

export function registerLogin(program: Command): void {
  const login = examples(
    program
      .command('login')
      .summary('log in and store the token in the profile\'s token file (0600)')
      .description(
        'log in with one of the methods below. The token is written to the profile\'s token file ' +
          '($XDG_CONFIG_HOME/coffer/token, else ~/.config/coffer/token; tokens/<profile> for other profiles), mode 0600, ' +
          'which later commands read when neither --token nor COFFER_TOKEN is set. Secrets (passwords, secret ids, tokens) ' +
          'are read from stdin, a file or an unechoed prompt, never from arguments.',
      ),
    'coffer login userpass -u alice',
    'echo "$SECRET_ID" | coffer login approle --role-id "$ROLE_ID"',
    'coffer login oidc --role ci-deploy            # in GitHub Actions or GitLab CI',
    'export COFFER_TOKEN=$(coffer login oidc --role ci --token-only)',
  );

  examples(
    storeOption(
      login
        .command('token')
        .description('store an existing token (read from stdin; prompted for, unechoed, on a terminal) after checking it with the server'),
    ).action(async (opts: StoreOptions, cmd: Command) => {
      const ctx = loginContext(cmd);
      const token = (process.stdin.isTTY ? await promptHidden('Token: ') : await readStdin()).trim();
      if (!token) throw usageError('no token given on stdin');
      const client = ctx.client({ auth: false });
      const info = await client.auth.token(token);
      if (opts.tokenOnly) return void process.stdout.write(`${token}\n`);
      const file = ctx.ensureProfile().tokenFile;
      writeTokenFile(file, token);
      ctx.print({ ...info, token_file: file }, () => renderTokenInfo(info, file));
    }),
    'coffer login token < root-token.txt',
    'coffer login token            # prompts',
  );

  examples(
    storeOption(
      login
        .command('userpass')
        .description(
          'log in with a username and password. The password is prompted for without echo on a terminal, else read ' +
            'from stdin (--password-stdin makes that explicit); COFFER_PASSWORD is also read, for CI.',
        )
        .option('-u, --username <name>', 'username (default: COFFER_USERNAME, else prompted for)')
        .option('--password-stdin', 'read the password from stdin even on a terminal'),
    ).action(async (opts: StoreOptions & { username?: string; passwordStdin?: boolean }, cmd: Command) => {
      const ctx = loginContext(cmd);
      let username = opts.username ?? process.env.COFFER_USERNAME;
      if (!username) {
        if (!process.stdin.isTTY) throw usageError('no username: pass -u/--username or set COFFER_USERNAME');
        username = (await promptLine('Username: ')).trim();
      }
      if (!username) throw usageError('no username given');
      const password = opts.passwordStdin
        ? (await readStdin()).replace(/\r?\n$/, '')
        : await secretInput('password', undefined, 'COFFER_PASSWORD');
      if (!password) throw usageError('no password given');
      const client = ctx.client({ auth: false });
      finishLogin(ctx, await client.auth.userpass(username, password), opts);
    }),
    'coffer login userpass -u alice',
    'printf %s "$PASSWORD" | coffer login userpass -u alice --password-stdin',
  );

  examples(
    storeOption(
      login
        .command('approle')
        .description(
          'log in as an application with a role id and a secret id. The role id is an identifier (flag or COFFER_ROLE_ID); ' +
            'the secret id is a credential: --secret-id-file FILE ("-" = stdin), COFFER_SECRET_ID, or stdin / an unechoed prompt.',
        )
        .option('--role-id <id>', 'role id (default: COFFER_ROLE_ID)')
        .option('--secret-id-file <file>', 'file holding the secret id ("-" for stdin)'),
    ).action(async (opts: StoreOptions & { roleId?: string; secretIdFile?: string }, cmd: Command) => {
      const ctx = loginContext(cmd);
      const roleId = opts.roleId ?? process.env.COFFER_ROLE_ID;
      if (!roleId) throw usageError('no role id: pass --role-id or set COFFER_ROLE_ID');
      const secretId = await secretInput('secret id', opts.secretIdFile, 'COFFER_SECRET_ID');
      const client = ctx.client({ auth: false });
      finishLogin(ctx, await client.auth.approle(roleId, secretId), opts);
    }),
    'COFFER_ROLE_ID=... COFFER_SECRET_ID=... coffer login approle',
    'coffer login approle --role-id "$ROLE_ID" --secret-id-file /run/secrets/secret-id',
  );

  examples(
    storeOption(
      login
        .command('oidc')
        .alias('jwt')
        .description(
          `log in with an OIDC ID token of the CI job (JWT auth). Found, in order: --jwt-file; the variable named by --token-env ` +
            `(default ${DEFAULT_ID_TOKEN_ENV}; in GitLab CI declare it under id_tokens: with the audience the role expects); ` +
            `GitHub Actions' token endpoint (needs permissions: id-token: write), asked for --audience; GitLab's deprecated CI_JOB_JWT_V2.`,
        )
        .requiredOption('--role <role>', 'JWT role on the server (its bound claims decide who may log in)')
        .option('--audience <aud>', 'audience to request from GitHub Actions', DEFAULT_AUDIENCE)
        .option('--token-env <var>', 'variable holding a ready ID token', DEFAULT_ID_TOKEN_ENV)
        .option('--jwt-file <file>', 'file holding the ID token ("-" for stdin)'),
    ).action(async (opts: StoreOptions & { role: string; audience: string; tokenEnv: string; jwtFile?: string }, cmd: Command) => {
      const ctx = loginContext(cmd);
      const client = ctx.client({ auth: false });
      let auth: AuthInfo;
      if (opts.jwtFile !== undefined) {
        const jwt = await secretInput('ID token', opts.jwtFile, '');
        auth = await client.auth.jwt(opts.role, jwt.trim());
      } else {
        auth = await client.auth.oidc(opts.role, { audience: opts.audience, tokenEnv: opts.tokenEnv });
      }
      finishLogin(ctx, auth, opts);
    }),
    'coffer login oidc --role deploy-prod',
    'coffer login oidc --role ci --audience https://coffer.example.com',
    'coffer login oidc --role ci --token-env VAULT_ID_TOKEN   # GitLab id_tokens variable',
  );

  examples(
    storeOption(
      login
        .command('cert')
        .description(
          'log in with a TLS client certificate (mutual TLS) under a certificate role. The server must use TLS with ' +
            'COFFER_TLS_CLIENT_CA_FILE; the certificate and key are PEM files (default COFFER_CLIENT_CERT / COFFER_CLIENT_KEY). ' +
            'Only the login presents the certificate; later commands use the token.',
        )
        .requiredOption('--role <role>', 'certificate role on the server')
        .option('--cert <file>', 'PEM client certificate (default: COFFER_CLIENT_CERT)')
        .option('--key <file>', 'PEM private key of that certificate (default: COFFER_CLIENT_KEY)'),
    ).action(async (opts: StoreOptions & { role: string; cert?: string; key?: string }, cmd: Command) => {
      const ctx = loginContext(cmd);
      const certFile = opts.cert ?? process.env.COFFER_CLIENT_CERT;
      const keyFile = opts.key ?? process.env.COFFER_CLIENT_KEY;
      if (!certFile || !keyFile) throw usageError('a client certificate needs --cert and --key (or COFFER_CLIENT_CERT and COFFER_CLIENT_KEY)');
      if (!ctx.address().startsWith('https://')) throw usageError('certificate login needs an https:// address');
      const read = async (file: string, what: string) => {
        try {
          return await readFile(file, 'utf8');
        } catch (err) {
          throw new CliError(`cannot read the ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
        }
      };
      const { createNodeFetch } = await import('../http-fetch.js');
      const fetch = createNodeFetch({ cert: await read(certFile, 'client certificate'), key: await read(keyFile, 'client key') });
      const client = ctx.client({ auth: false, fetch });
      finishLogin(ctx, await client.auth.cert(opts.role), opts);
    }),
    'coffer login cert --role runners --cert runner.pem --key runner-key.pem',
    'COFFER_CLIENT_CERT=/etc/coffer/tls.crt COFFER_CLIENT_KEY=/etc/coffer/tls.key coffer login cert --role payments-api',
  );

  examples(
    program
      .command('logout')
      .description('revoke the token stored in the profile\'s token file and delete the file (deleted even when the server cannot be reached; COFFER_TOKEN is left alone)')
      .option('--keep-token', 'only delete the file; do not revoke the token')
      .action(async (opts: { keepToken?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const file = ctx.profile().tokenFile;
        let revokeError: unknown;
        if (!opts.keepToken) {
          // The stored token only: a COFFER_TOKEN in the environment belongs to someone else's session.
          let token: string | undefined;
          try {
            token = readTokenFile(file);
          } catch {
            token = undefined; // a file with wrong permissions is still removed below
          }
          if (token) {
            try {
              await ctx.client({ auth: false, token }).token.revokeSelf();
            } catch (err) {
              revokeError = err;
            }
          }
        }
        const removed = removeFile(file);
        ctx.print({ token_file: file, removed, revoked: !opts.keepToken && revokeError === undefined }, () =>
          removed ? `Removed ${file}\n` : `No token file at ${file}\n`,
        );
        if (revokeError) throw revokeError;
      }),
    'coffer logout',
    'coffer --profile prod logout',
  );

  const token = examples(
    program.command('token').description('inspect, renew and revoke the current token'),
    'coffer token lookup',
    'coffer token renew',
    'coffer token capabilities -n app db/password',
  );

  examples(
    token
      .command('lookup')
      .description('show the current token\'s identity, policies and expiry; with --accessor, another token\'s (admin)')
      .option('--accessor <accessor>', 'look up the token with this accessor (admin)')
      .action(async (opts: { accessor?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const info = opts.accessor ? await client.token.lookupAccessor(opts.accessor) : await client.token.lookupSelf();
        ctx.print(info, () => renderTokenInfo(info));
      }),
    'coffer token lookup',
    'coffer token lookup --format json | jq .expires_at',
  );

  examples(
    token
      .command('renew')
      .description('renew the current token; the new token replaces the one in the token file (when it came from there)')
      .option('--increment <seconds>', 'requested lifetime from now (capped by the server)', integer(1))
      .action(async (opts: { increment?: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const fromFile = !ctx.globals.token;
        const client = ctx.client({ auth: true });
        const auth = await client.token.renewSelf({ increment: opts.increment });
        if (fromFile) writeTokenFile(ctx.profile().tokenFile, auth.client_token);
        else process.stderr.write('Note: the renewed token was not stored (the token came from --token/COFFER_TOKEN); use --format json to read client_token\n');
        // JSON gets the new token only when it cannot be in the file: scripts holding COFFER_TOKEN need it.
        ctx.print(fromFile ? publicAuth(auth) : auth, () => renderAuth(auth, fromFile ? ctx.profile().tokenFile : undefined));
      }),
    'coffer token renew',
    'coffer token renew --increment 3600',
  );

  examples(
    token
      .command('revoke')
      .description('revoke the current token (and delete the token file when it came from there); with --accessor, another token (admin)')
      .option('--accessor <accessor>', 'revoke the token with this accessor (admin)')
      .action(async (opts: { accessor?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client: CofferClient = ctx.client({ auth: true });
        if (opts.accessor) {
          await client.token.revokeAccessor(opts.accessor);
          ctx.print({ revoked: opts.accessor }, () => `Revoked the token with accessor ${opts.accessor}\n`);
          return;
        }
        await client.token.revokeSelf();
        if (!ctx.globals.token) removeFile(ctx.profile().tokenFile);
        ctx.print({ revoked: 'self' }, () => 'Revoked the current token\n');
      }),
    'coffer token revoke',
    'coffer token revoke --accessor 3f2a...',
  );

  examples(
    token
      .command('capabilities')
      .description('what the current token may do at a path of a namespace (no path: the namespace itself)')
      .argument('[path]', 'secret path', '')
      .action(async (pathArg: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const namespace = ctx.namespace();
        const caps = await ctx.client({ auth: true }).token.capabilitiesSelf(namespace, pathArg);
        ctx.print({ namespace, path: pathArg, capabilities: caps }, () => `${caps.length ? caps.join(', ') : 'deny'}\n`);
      }),
    'coffer -n app token capabilities db/password',
  );

  examples(
    token
      .command('create')
      .description('create a child token (admin); prints the new token on stdout (or the whole auth block with --format json)')
      .requiredOption('--policy <name...>', 'policies of the new token (a subset of yours unless you are root)')
      .option('--ttl <seconds>', 'lifetime', integer(1))
      .option('--display-name <name>', 'name shown in the audit log')
      .option('--no-renewable', 'the token cannot be renewed')
      .action(async (opts: { policy: string[]; ttl?: number; displayName?: string; renewable: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const auth = await ctx.client({ auth: true }).token.create({
          policies: opts.policy,
          ttl: opts.ttl,
          display_name: opts.displayName,
          renewable: opts.renewable,
        });
        ctx.print(auth, () => `${auth.client_token}\n`);
      }),
    'coffer token create --policy ci-read --ttl 3600 > ci-token.txt',
  );
}
