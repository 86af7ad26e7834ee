/**
 * Thin admin commands over the identity/policy API: `coffer policy|user|approle|jwt`.
 * JSON bodies come from a file or stdin ('-'); passwords and secret ids never from arguments.
 */
import { readFile } from 'node:fs/promises';
import type { ApproleOptions, JwtIssuer, JwtRole, Policy } from '@coffer/sdk';
import type { Command } from 'commander';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { readSecretFromStdin, readStdin } from '../input.js';
import { json } from '../output.js';
import { writeNewPrivateFile } from '../private-file.js';
import { examples, integer } from './common.js';

/** A JSON object from FILE or '-' (stdin). The content is never echoed in errors. */
async function jsonInput<T>(file: string, what: string): Promise<T> {
  let text: string;
  if (file === '-') text = await readStdin();
  else {
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw usageError(`${what} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw usageError(`${what} must be a JSON object`);
  return value as T;
}

/** Server answers as JSON either way: these objects have no fixed table shape yet. */
function show(ctx: Context, value: unknown, text: string): void {
  ctx.print(value, () => (value === undefined ? text : json(value)));
}

const list = (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

export function registerAdmin(program: Command): void {
  // Policies
  const policy = examples(
    program.command('policy').description('manage policies (admin): rules of namespace/path globs, capabilities and effect'),
    'coffer policy write dev dev.json',
    'coffer policy read dev',
  );
  examples(
    policy
      .command('write')
      .description('create or replace a policy from a JSON file {"rules": [{"namespace", "path", "capabilities", "effect"?}]} ("-" for stdin)')
      .argument('<name>')
      .argument('<file>', 'JSON file, or - for stdin')
      .action(async (name: string, file: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const body = await jsonInput<Policy>(file, 'the policy');
        if (!Array.isArray(body.rules)) throw usageError('the policy needs a "rules" array');
        const result = await ctx.client({ auth: true }).admin.putPolicy(name, body);
        show(ctx, result ?? { name }, `Policy ${name} written\n`);
      }),
    `echo '{"rules":[{"namespace":"app-*","path":"db/*","capabilities":["read","list"]}]}' | coffer policy write dev -`,
  );
  examples(
    policy
      .command('read')
      .description('print a policy')
      .argument('<name>')
      .action(async (name: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        process.stdout.write(json(await ctx.client({ auth: true }).admin.getPolicy(name)));
      }),
    'coffer policy read app-prod-read --format json',
  );
  examples(
    policy
      .command('list')
      .description('list policies')
      .action(async (_o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        process.stdout.write(json(await ctx.client({ auth: true }).admin.listPolicies()));
      }),
    'coffer policy list',
  );
  examples(
    policy
      .command('delete')
      .description('delete a policy')
      .argument('<name>')
      .action(async (name: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        await ctx.client({ auth: true }).admin.deletePolicy(name);
        show(ctx, { deleted: name }, `Policy ${name} deleted\n`);
      }),
    'coffer policy delete old-policy',
  );
  // userpass users
  const user = examples(
    program.command('user').description('manage userpass users (admin)'),
    'coffer user put alice --policy dev        # prompts for the password',
    'printf %s "$PW" | coffer user put ci-bot --policy ci',
  );
  examples(
    user
      .command('put')
      .description('create or update a user; the password is read from stdin (prompted for, unechoed, on a terminal) unless --keep-password')
      .argument('<username>')
      .option('--policy <names>', 'comma-separated policies (repeatable)', list)
      .option('--group <names>', 'comma-separated groups (repeatable)', list)
      .option('--keep-password', 'update policies/groups only')
      .action(async (username: string, opts: { policy?: string[]; group?: string[]; keepPassword?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const password = opts.keepPassword ? undefined : await readSecretFromStdin(`Password for ${username}: `);
        if (password === '') throw usageError('empty password');
        const result = await client.admin.putUser(username, { password, policies: opts.policy, groups: opts.group });
        show(ctx, result ?? { username }, `User ${username} written\n`);
      }),
    'coffer user put alice --policy dev,readers',
    'printf %s "$PW" | coffer user put ci-bot --policy ci',
    'coffer user put alice --policy admins --keep-password',
  );
  examples(
    user
      .command('list')
      .description('list users')
      .action(async (_o: object, cmd: Command) => {
        process.stdout.write(json(await Context.of(cmd).client({ auth: true }).admin.listUsers()));
      }),
    'coffer user list',
  );
  examples(
    user
      .command('delete')
      .description('delete a user')
      .argument('<username>')
      .action(async (username: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        await ctx.client({ auth: true }).admin.deleteUser(username);
        show(ctx, { deleted: username }, `User ${username} deleted\n`);
      }),
    'coffer user delete alice',
  );
  examples(
    user
      .command('unlock')
      .description('lift a user\'s login lockout (on the server that answers: lockouts are counted per server)')
      .argument('<username>')
      .action(async (username: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const result = await ctx.client({ auth: true }).admin.unlockUser(username);
        show(ctx, { username, ...result }, result.unlocked ? `User ${username} unlocked\n` : `User ${username} was not locked out\n`);
      }),
    'coffer user unlock alice',
  );
  // AppRole
  const approle = examples(
    program.command('approle').description('manage AppRole roles (admin): machines log in with a role id and a secret id'),
    'coffer approle write deployer --policy deploy --token-ttl 900',
    'coffer approle role-id deployer',
    'coffer approle secret-id deployer --out secret-id.txt',
  );
  examples(
    approle
      .command('write')
      .description('create or replace a role')
      .argument('<role>')
      .requiredOption('--policy <names>', 'comma-separated policies (repeatable)', list)
      .option('--token-ttl <s>', 'token lifetime', integer(1))
      .option('--token-max-ttl <s>', 'cap for renewals', integer(1))
      .option('--secret-id-ttl <s>', 'secret id lifetime', integer(1))
      .option('--secret-id-num-uses <n>', 'logins per secret id (0 = unlimited)', integer(0))
      .option('--bound-cidrs <cidrs>', 'comma-separated CIDRs logins must come from', list)
      .action(async (role: string, o: { policy: string[]; tokenTtl?: number; tokenMaxTtl?: number; secretIdTtl?: number; secretIdNumUses?: number; boundCidrs?: string[] }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const body: ApproleOptions = {
          policies: o.policy,
          token_ttl: o.tokenTtl,
          token_max_ttl: o.tokenMaxTtl,
          secret_id_ttl: o.secretIdTtl,
          secret_id_num_uses: o.secretIdNumUses,
          bound_cidrs: o.boundCidrs,
        };
        const result = await ctx.client({ auth: true }).admin.putApprole(role, body);
        show(ctx, result ?? { role }, `Role ${role} written\n`);
      }),
    'coffer approle write deployer --policy deploy --token-ttl 900 --token-max-ttl 3600 --secret-id-num-uses 1',
  );
  examples(
    approle
      .command('role-id')
      .description('print the role id of a role')
      .argument('<role>')
      .action(async (role: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const id = await ctx.client({ auth: true }).admin.roleId(role);
        ctx.print({ role_id: id }, () => `${id}\n`);
      }),
    'coffer approle role-id deployer',
  );
  examples(
    approle
      .command('secret-id')
      .description('create a secret id for a role and print it (stdout only: redirect it to where it is needed)')
      .argument('<role>')
      .option('--cidrs <cidrs>', 'comma-separated CIDRs this secret id may log in from', list)
      .option('--out <file>', 'write the secret id to FILE (created mode 0600, never overwritten) instead of stdout')
      .action(async (role: string, o: { cidrs?: string[]; out?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const create = () => ctx.client({ auth: true }).admin.createSecretId(role, { cidrs: o.cidrs });
        if (o.out === undefined) {
          const result = await create();
          ctx.print(result, () => `${result.secret_id}\n`);
          return;
        }
        const file = o.out;
        const { secret_id: _id, ...rest } = await writeNewPrivateFile(file, async () => {
          const result = await create();
          return { content: `${result.secret_id}\n`, result };
        });
        ctx.print({ ...rest, secret_id_file: file }, () => `Secret id for ${role} written to ${file} (mode 0600)\n`);
      }),
    'coffer approle secret-id deployer --out secret-id.txt   # 0600; with "> file" mind your umask',
    'coffer approle secret-id deployer --cidrs 10.0.0.0/8 --format json',
  );
  examples(
    approle
      .command('delete')
      .description('delete a role')
      .argument('<role>')
      .action(async (role: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        await ctx.client({ auth: true }).admin.deleteApprole(role);
        show(ctx, { deleted: role }, `Role ${role} deleted\n`);
      }),
    'coffer approle delete deployer',
  );
  // Client certificates (mutual TLS)
  const cert = examples(
    program.command('cert').description('manage certificate roles (admin): machines log in with a TLS client certificate'),
    'coffer cert role write runners runners.json',
  );
  const certRole = examples(cert.command('role').description('certificate roles (allowed CNs, SANs, organisations → policies)'), 'coffer cert role write runners runners.json');
  examples(
    certRole
      .command('write')
      .description('create or replace a role from JSON {"allowed_common_names"?, "allowed_dns_sans"?, "allowed_uri_sans"?, "allowed_organizations"?, "policies", "token_ttl"?} ("-" for stdin)')
      .argument('<role>')
      .argument('<file>', 'JSON file, or - for stdin')
      .action(async (name: string, file: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const body = await jsonInput<Record<string, unknown>>(file, 'the role');
        const result = await ctx.client({ auth: true }).admin.putCertRole(name, body);
        show(ctx, result ?? { role: name }, `Role ${name} written\n`);
      }),
    `echo '{"allowed_common_names":["ci-runner-*"],"policies":["ci"]}' | coffer cert role write runners -`,
  );
  examples(
    certRole
      .command('read')
      .argument('<role>')
      .action(async (name: string, _o: object, cmd: Command) => {
        process.stdout.write(json(await Context.of(cmd).client({ auth: true }).admin.getCertRole(name)));
      }),
    'coffer cert role read runners',
  );
  examples(
    certRole
      .command('delete')
      .description('delete a role (revokes the tokens it issued)')
      .argument('<role>')
      .action(async (name: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        await ctx.client({ auth: true }).admin.deleteCertRole(name);
        show(ctx, { deleted: name }, `Role ${name} deleted\n`);
      }),
    'coffer cert role delete runners',
  );

  // JWT / OIDC
  const jwt = examples(
    program.command('jwt').description('manage OIDC/JWT issuers and roles (admin): CI jobs log in with their ID tokens'),
    'coffer jwt issuer github --issuer https://token.actions.githubusercontent.com --discovery-url https://token.actions.githubusercontent.com',
    'coffer jwt role write deploy-prod role.json',
  );
  examples(
    jwt
      .command('issuer')
      .description('create or replace an issuer (keys from discovery, a JWKS URL or PEM public keys)')
      .argument('<name>')
      .requiredOption('--issuer <url>', 'the iss claim tokens must carry')
      .option('--discovery-url <url>', 'OIDC discovery base URL')
      .option('--jwks-url <url>', 'JWKS URL')
      .option('--public-key-file <file...>', 'PEM public key file(s)')
      .action(async (name: string, o: { issuer: string; discoveryUrl?: string; jwksUrl?: string; publicKeyFile?: string[] }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const body: JwtIssuer = { issuer: o.issuer, discovery_url: o.discoveryUrl, jwks_url: o.jwksUrl };
        if (o.publicKeyFile) body.public_keys = await Promise.all(o.publicKeyFile.map((f) => readFile(f, 'utf8')));
        const result = await ctx.client({ auth: true }).admin.putJwtIssuer(name, body);
        show(ctx, result ?? { name }, `Issuer ${name} written\n`);
      }),
    'coffer jwt issuer github --issuer https://token.actions.githubusercontent.com --discovery-url https://token.actions.githubusercontent.com',
    'coffer jwt issuer k8s --issuer https://kubernetes.default.svc --public-key-file sa.pub',
  );
  const role = examples(jwt.command('role').description('JWT roles (bound audiences and claims → policies)'), 'coffer jwt role write deploy-prod role.json');
  examples(
    role
      .command('write')
      .description('create or replace a role from JSON {"issuer", "bound_audiences", "bound_claims", "user_claim", "policies", ...} ("-" for stdin)')
      .argument('<role>')
      .argument('<file>', 'JSON file, or - for stdin')
      .action(async (name: string, file: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const body = await jsonInput<JwtRole>(file, 'the role');
        const result = await ctx.client({ auth: true }).admin.putJwtRole(name, body);
        show(ctx, result ?? { role: name }, `Role ${name} written\n`);
      }),
    'coffer jwt role write deploy-prod role.json',
    'cat role.json | coffer jwt role write deploy-prod -',
  );
  examples(
    role
      .command('read')
      .argument('<role>')
      .action(async (name: string, _o: object, cmd: Command) => {
        process.stdout.write(json(await Context.of(cmd).client({ auth: true }).admin.getJwtRole(name)));
      }),
    'coffer jwt role read deploy-prod',
  );
  examples(
    role
      .command('delete')
      .argument('<role>')
      .action(async (name: string, _o: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        await ctx.client({ auth: true }).admin.deleteJwtRole(name);
        show(ctx, { deleted: name }, `Role ${name} deleted\n`);
      }),
    'coffer jwt role delete deploy-prod',
  );}
