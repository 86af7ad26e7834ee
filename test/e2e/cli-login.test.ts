// End to end: login, the token cache, profiles and precedence, `coffer run --fallback`, completion,
// exit codes and JSON output — the built `coffer` in a throwaway HOME against real server processes.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, runCli, startDevServer, type CliResult, type DevServer } from '../helpers/process.js';

const NS = 'e2elogin';
const CLI_BIN = fileURLToPath(new URL('../../../cli/bin/coffer.js', import.meta.url));
const secretValue = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;
const V = { db: secretValue('db'), api: secretValue('api'), ref: secretValue('ref') };
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;

let server: DevServer;
let home: string;

type Env = Record<string, string | undefined>;

/** coffer as a user in `home`: by default with the address exported but no token (the token file is used). */
function coffer(args: string[], options: { input?: string; env?: Env } = {}): Promise<CliResult> {
  return runCli(args, { input: options.input, env: { HOME: home, COFFER_ADDR: server.address, ...options.env } });
}

async function ok(args: string[], options: { input?: string; env?: Env } = {}): Promise<string> {
  const result = await coffer(args, options);
  if (result.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

const asRoot = (): Env => ({ COFFER_TOKEN: server.rootToken });
const tokenFile = (h = home, profile?: string) => path.join(h, '.config', 'coffer', profile ? path.join('tokens', profile) : 'token');
const mode = async (file: string) => (await stat(file)).mode & 0o777;

/** A node one-liner that prints chosen env vars as JSON. */
const printEnv = (...names: string[]) => ['node', '-e', `const o={};for(const n of ${JSON.stringify(names)})o[n]=process.env[n];process.stdout.write(JSON.stringify(o))`];

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-login-home-'));
  server = await startDevServer();
  await ok(['ns', 'create', NS], { env: asRoot() });
  await ok(['-n', NS, 'secret', 'put', 'app/db', `password=${V.db}`], { env: asRoot() });
  await ok(['-n', NS, 'secret', 'put', 'app/api', `key=${V.api}`], { env: asRoot() });
  await ok(['-n', NS, 'secret', 'put', 'refs/one', `v=${V.ref}`], { env: asRoot() });
});

afterAll(async () => {
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

describe('coffer login token and the token file', () => {
  it('stores a token read from stdin in a 0600 file (dir 0700) that later commands use; the token is not printed', async () => {
    const out = await ok(['login', 'token'], { input: `${server.rootToken}\n` });
    expect(out).not.toContain(server.rootToken);
    expect(out).toContain('root');
    expect(await readFile(tokenFile(), 'utf8')).toBe(`${server.rootToken}\n`);
    expect(await mode(tokenFile())).toBe(0o600);
    expect(await mode(path.dirname(tokenFile()))).toBe(0o700);
    const info = JSON.parse(await ok(['token', 'lookup', '--format', 'json'])) as { identity: string; policies: string[] };
    expect(info.policies).toContain('root');
  });

  it('refuses a token file other users can read (exit 1, names chmod) and a bad token (exit 3)', async () => {
    await chmod(tokenFile(), 0o644);
    const wide = await coffer(['token', 'lookup']);
    expect(wide.code).toBe(1);
    expect(wide.stderr).toContain('chmod 600');
    expect(wide.stderr).not.toContain(server.rootToken);
    await chmod(tokenFile(), 0o600);

    const bad = await coffer(['login', 'token'], { input: 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA\n' });
    expect(bad.code).toBe(3);
    // The stored root token is left alone when the new one is refused.
    expect(await readFile(tokenFile(), 'utf8')).toBe(`${server.rootToken}\n`);
  });

  it('--token-only prints the token and stores nothing', async () => {
    const h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-login-only-'));
    try {
      const r = await runCli(['login', 'token', '--token-only'], { input: server.rootToken, env: { HOME: h, COFFER_ADDR: server.address } });
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(server.rootToken);
      expect(existsSync(tokenFile(h))).toBe(false);
    } finally {
      await rm(h, { recursive: true, force: true });
    }
  });
});

describe('userpass and approle logins (issue 4 endpoints)', () => {
  let roleId: string;

  beforeAll(async () => {
    await ok(['policy', 'write', 'e2e-reader', '-'], {
      env: asRoot(),
      input: JSON.stringify({ rules: [{ namespace: NS, path: 'app/*', capabilities: ['read', 'list'] }] }),
    });
    await ok(['user', 'put', 'alice', '--policy', 'e2e-reader'], { env: asRoot(), input: PASSWORD });
    await ok(['approle', 'write', 'deployer', '--policy', 'e2e-reader', '--token-ttl', '600', '--token-max-ttl', '1200'], { env: asRoot() });
    roleId = (await ok(['approle', 'role-id', 'deployer'], { env: asRoot() })).trim();
  });

  it('userpass: the password comes from stdin (not a TTY), the token lands in the profile file', async () => {
    const h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-userpass-'));
    try {
      const env = { HOME: h, COFFER_ADDR: server.address };
      const r = await runCli(['login', 'userpass', '-u', 'alice', '--format', 'json'], { input: `${PASSWORD}\n`, env });
      expect(r.code).toBe(0);
      const auth = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(auth).toMatchObject({ identity: 'user:alice', policies: ['e2e-reader'], renewable: true });
      expect(auth.client_token).toBeUndefined();
      expect(r.stdout + r.stderr).not.toContain(PASSWORD);
      expect(await mode(tokenFile(h))).toBe(0o600);

      const lookup = JSON.parse((await runCli(['token', 'lookup', '--format', 'json'], { env })).stdout) as { identity: string; accessor: string };
      expect(lookup.identity).toBe('user:alice');
      // Her policy allows reading app/*: a single read and a bulk `coffer run` work with the stored token.
      const read = await runCli(['-n', NS, 'secret', 'get', 'app/db', '--field', 'password'], { env });
      expect(read.stdout.trim()).toBe(V.db);
      const ran = await runCli(['-n', NS, 'run', '--prefix', 'app/', '--', ...printEnv('DB', 'API')], { env });
      expect(ran.code).toBe(0);
      expect(JSON.parse(ran.stdout)).toEqual({ DB: V.db, API: V.api });
      // Not in alice's policy: denied, exit 3.
      const denied = await runCli(['-n', NS, 'secret', 'get', 'refs/one'], { env });
      expect(denied.code).toBe(3);

      // renew swaps the token in the file; the old one stays valid until its expiry (same accessor).
      // JWT times are whole seconds: a renewal within the login's second would sign the same token.
      await new Promise((r) => setTimeout(r, 1100));
      const before = await readFile(tokenFile(h), 'utf8');
      const renewed = JSON.parse((await runCli(['token', 'renew', '--format', 'json'], { env })).stdout) as { accessor: string; client_token?: string };
      expect(renewed.client_token).toBeUndefined();
      const after = await readFile(tokenFile(h), 'utf8');
      expect(after).not.toBe(before);
      expect(renewed.accessor).toBe(lookup.accessor);

      // logout revokes the stored token (not a COFFER_TOKEN of the environment) and removes the file.
      const token = after.trim();
      expect((await runCli(['logout'], { env: { ...env, COFFER_TOKEN: server.rootToken } })).code).toBe(0);
      expect((await runCli(['token', 'lookup'], { env: { ...env, COFFER_TOKEN: server.rootToken } })).code).toBe(0);
      expect(existsSync(tokenFile(h))).toBe(false);
      const revoked = await runCli(['token', 'lookup'], { env: { ...env, COFFER_TOKEN: token } });
      expect(revoked.code).toBe(3);
    } finally {
      await rm(h, { recursive: true, force: true });
    }
  });

  it('userpass: a wrong password is exit 3 with the server message, and writes no token', async () => {
    const h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-userpass-bad-'));
    try {
      const r = await runCli(['login', 'userpass', '-u', 'alice', '--password-stdin'], { input: 'wrong-password', env: { HOME: h, COFFER_ADDR: server.address } });
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('login_failed');
      expect(existsSync(tokenFile(h))).toBe(false);
    } finally {
      await rm(h, { recursive: true, force: true });
    }
  });

  it('coffer user unlock: an admin lifts a lockout; without admin rights it is exit 3', async () => {
    const unlocked = JSON.parse(await ok(['user', 'unlock', 'alice', '--format', 'json'], { env: asRoot() })) as Record<string, unknown>;
    expect(unlocked).toEqual({ username: 'alice', unlocked: false });
    expect((await coffer(['user', 'unlock', 'alice'], { env: { COFFER_TOKEN: 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA' } })).code).toBe(3);
  });

  it('approle: role id from the flag, secret id from COFFER_SECRET_ID or stdin; --profile creates the profile', async () => {
    const h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-approle-'));
    try {
      const secretId = (await ok(['approle', 'secret-id', 'deployer'], { env: asRoot() })).trim();
      const env = { HOME: h, COFFER_ADDR: server.address };
      const r = await runCli(['--profile', 'ci', 'login', 'approle', '--role-id', roleId], { input: `${secretId}\n`, env });
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(secretId);
      expect(await mode(tokenFile(h, 'ci'))).toBe(0o600);
      const config = JSON.parse(await readFile(path.join(h, '.config', 'coffer', 'config.json'), 'utf8')) as { profiles: Record<string, { address: string }> };
      expect(config.profiles.ci!.address).toBe(server.address);
      // The profile now carries the address: no COFFER_ADDR needed.
      const lookup = await runCli(['--profile', 'ci', 'token', 'lookup', '--format', 'json'], { env: { HOME: h } });
      expect(JSON.parse(lookup.stdout)).toMatchObject({ identity: 'approle:deployer' });
      // The default profile has no token.
      expect((await runCli(['token', 'lookup'], { env: { HOME: h } })).code).toBe(3);

      const second = (await ok(['approle', 'secret-id', 'deployer'], { env: asRoot() })).trim();
      const viaEnv = await runCli(['login', 'approle', '--token-only'], { env: { ...env, COFFER_ROLE_ID: roleId, COFFER_SECRET_ID: second } });
      expect(viaEnv.code).toBe(0);
      expect(viaEnv.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    } finally {
      await rm(h, { recursive: true, force: true });
    }
  });

  it('token create / capabilities / lookup and revoke by accessor', async () => {
    const created = JSON.parse(await ok(['token', 'create', '--policy', 'e2e-reader', '--ttl', '300', '--display-name', 'ci-bot', '--format', 'json'], { env: asRoot() })) as {
      client_token: string;
      accessor: string;
      policies: string[];
    };
    expect(created.policies).toEqual(['e2e-reader']);
    const child = { COFFER_TOKEN: created.client_token };
    const caps = JSON.parse(await ok(['-n', NS, 'token', 'capabilities', 'app/db', '--format', 'json'], { env: child })) as { capabilities: string[] };
    expect(caps.capabilities.sort()).toEqual(['list', 'read']);
    expect((await ok(['-n', NS, 'token', 'capabilities', 'refs/one'], { env: child })).trim()).toBe('deny');
    const info = JSON.parse(await ok(['token', 'lookup', '--accessor', created.accessor, '--format', 'json'], { env: asRoot() })) as { display_name: string };
    expect(info.display_name).toBe('ci-bot');
    // A non-admin cannot create tokens (exit 3); root revokes the child by accessor.
    expect((await coffer(['token', 'create', '--policy', 'e2e-reader'], { env: child })).code).toBe(3);
    await ok(['token', 'revoke', '--accessor', created.accessor], { env: asRoot() });
    expect((await coffer(['token', 'lookup'], { env: child })).code).toBe(3);
  });

  it('oidc outside CI: a clear usage-level error naming what is missing', async () => {
    const r = await coffer(['login', 'oidc', '--role', 'deploy']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no CI identity');
  });
});

describe('profiles and precedence', () => {
  let h: string;
  let closedAddr: string;

  beforeAll(async () => {
    h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-profiles-'));
    closedAddr = `http://127.0.0.1:${await freePort()}`;
    const env = { HOME: h };
    await runCli(['config', 'set', 'address', closedAddr], { env });
    await runCli(['--profile', 'good', 'config', 'set', 'address', server.address], { env });
    await runCli(['--profile', 'good', 'config', 'set', 'namespace', NS], { env });
    await runCli(['--profile', 'good', 'login', 'token'], { env, input: server.rootToken });
  });

  afterAll(async () => {
    await rm(h, { recursive: true, force: true });
  });

  const get = (args: string[], env: Env = {}) => runCli([...args, 'secret', 'get', 'app/db', '--field', 'password'], { env: { HOME: h, ...env } });

  it('the selected profile gives address, namespace and token file', async () => {
    const viaFlag = await get(['--profile', 'good']);
    expect(viaFlag.code).toBe(0);
    expect(viaFlag.stdout.trim()).toBe(V.db);
    const viaEnv = await get([], { COFFER_PROFILE: 'good' });
    expect(viaEnv.stdout.trim()).toBe(V.db);
  });

  it('env beats the profile, flags beat env', async () => {
    // COFFER_ADDR (closed port) overrides the good profile's address → unavailable, exit 5 (no retries: cli-failover tests them).
    expect((await get(['--profile', 'good'], { COFFER_ADDR: closedAddr, COFFER_RETRY_BUDGET: '0' })).code).toBe(5);
    // --addr beats COFFER_ADDR.
    expect((await get(['--profile', 'good', '--addr', server.address], { COFFER_ADDR: closedAddr })).code).toBe(0);
    // COFFER_NAMESPACE beats the profile's namespace (a namespace that does not exist → 4 or 3, never the value).
    const otherNs = await get(['--profile', 'good'], { COFFER_NAMESPACE: 'nosuchns' });
    expect([3, 4]).toContain(otherNs.code);
    expect(otherNs.stdout).not.toContain(V.db);
    // COFFER_TOKEN beats the token file.
    expect((await get(['--profile', 'good'], { COFFER_TOKEN: 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA' })).code).toBe(3);
  });

  it('the default profile and `config use`', async () => {
    expect((await get(['-n', NS], { COFFER_TOKEN: server.rootToken, COFFER_RETRY_BUDGET: '0' })).code).toBe(5); // default profile → the closed address
    expect((await runCli(['config', 'use', 'good'], { env: { HOME: h } })).code).toBe(0);
    expect((await get([])).stdout.trim()).toBe(V.db);
    const shown = JSON.parse((await runCli(['config', 'show', '--format', 'json'], { env: { HOME: h } })).stdout) as { selected: string };
    expect(shown.selected).toBe('good');
    expect((await runCli(['config', 'use', 'default'], { env: { HOME: h } })).code).toBe(0);
  });

  it('an unknown profile is a usage error (exit 2)', async () => {
    const r = await get(['--profile', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no profile "nope"');
  });
});

describe('coffer run --fallback', () => {
  let fb: DevServer;
  let h: string;
  let fallbackFile: string;

  beforeAll(async () => {
    fb = await startDevServer();
    h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-fallback-'));
    fallbackFile = path.join(h, 'cache', 'app.enc');
    const root = { HOME: h, COFFER_ADDR: fb.address, COFFER_TOKEN: fb.rootToken };
    await runCli(['ns', 'create', NS], { env: root });
    await runCli(['-n', NS, 'secret', 'put', 'app/db', `password=${V.db}`], { env: root });
    await runCli(['-n', NS, 'secret', 'put', 'refs/one', `v=${V.ref}`], { env: root });
  });

  afterAll(async () => {
    await fb?.stop();
    await rm(h, { recursive: true, force: true });
  });

  const run = (env: Env, marker?: string) =>
    runCli(['-n', NS, 'run', '--prefix', 'app/', '--fallback', fallbackFile, '--', ...(marker ? ['node', '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran')`] : printEnv('DB', 'REF'))], {
      env: { HOME: h, COFFER_ADDR: fb.address, COFFER_TOKEN: fb.rootToken, REF: `coffer://${NS}/refs/one`, ...env },
    });

  it('writes an encrypted 0600 copy after a good fetch, holding no value in clear', async () => {
    const r = await run({});
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ DB: V.db, REF: V.ref });
    expect(await mode(fallbackFile)).toBe(0o600);
    const text = await readFile(fallbackFile, 'utf8');
    expect(text).not.toContain(V.db);
    expect(text).not.toContain(V.ref);
    expect(await mode(path.join(h, '.config', 'coffer', 'fallback.key'))).toBe(0o600);
  });

  it('refuses to fall back when access is denied (401/403): the command does not run', async () => {
    const marker = path.join(h, 'denied-marker');
    const r = await run({ COFFER_TOKEN: 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA' }, marker);
    expect(r.code).toBe(3);
    expect(r.stderr).not.toContain('fallback copy');
    expect(existsSync(marker)).toBe(false);
  });

  it('uses the copy, with a warning on stderr, once the server is stopped', async () => {
    await fb.stop();
    const r = await run({});
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ DB: V.db, REF: V.ref });
    expect(r.stderr).toMatch(/Warning: cannot reach Coffer .*using the fallback copy from/);
    expect(r.stderr).not.toContain(V.db);
  });

  it('--fallback-max-age refuses a copy older than that (exit 5), accepts a younger one', async () => {
    await new Promise((r) => setTimeout(r, 1100));
    const tooOld = await runCli(['-n', NS, 'run', '--prefix', 'app/', '--fallback', fallbackFile, '--fallback-max-age', '1s', '--', 'true'], {
      env: { HOME: h, COFFER_ADDR: fb.address, COFFER_TOKEN: fb.rootToken, REF: `coffer://${NS}/refs/one` },
    });
    expect(tooOld.code).toBe(5);
    expect(tooOld.stderr).toContain('older than --fallback-max-age');
    const young = await runCli(['-n', NS, 'run', '--prefix', 'app/', '--fallback', fallbackFile, '--fallback-max-age', '1h', '--', 'true'], {
      env: { HOME: h, COFFER_ADDR: fb.address, COFFER_TOKEN: fb.rootToken, REF: `coffer://${NS}/refs/one` },
    });
    expect(young.code).toBe(0);
  });

  it('an altered copy, another key or another folder is refused, not half-used', async () => {
    const original = await readFile(fallbackFile, 'utf8');
    const body = JSON.parse(original) as { ciphertext: string };
    const ct = Buffer.from(body.ciphertext, 'base64');
    ct[0]! ^= 1;
    await writeFile(fallbackFile, JSON.stringify({ ...body, ciphertext: ct.toString('base64') }), { mode: 0o600 });
    const tampered = await run({});
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toContain('cannot be decrypted');
    await writeFile(fallbackFile, original, { mode: 0o600 });

    const otherKey = await run({ COFFER_FALLBACK_KEY: randomBytes(32).toString('base64') });
    expect(otherKey.code).toBe(1);
    expect(otherKey.stderr).toContain('cannot be decrypted');

    const otherFolder = await runCli(['-n', NS, 'run', '--prefix', 'refs/', '--fallback', fallbackFile, '--', 'true'], {
      env: { HOME: h, COFFER_ADDR: fb.address, COFFER_TOKEN: fb.rootToken },
    });
    expect(otherFolder.code).toBe(1);
    expect(otherFolder.stderr).toContain('holds');

    // A key file others can read is refused, as the token file is.
    const keyFile = path.join(h, '.config', 'coffer', 'fallback.key');
    await chmod(keyFile, 0o644);
    const wideKey = await run({});
    expect(wideKey.code).toBe(1);
    expect(wideKey.stderr).toContain('chmod 600');
    await chmod(keyFile, 0o600);

    // Without --fallback the outage is exit 5, as before.
    const plain = await runCli(['-n', NS, 'run', '--', 'true'], { env: { HOME: h, COFFER_ADDR: fb.address, COFFER_TOKEN: fb.rootToken, COFFER_RETRY_BUDGET: '0' } });
    expect(plain.code).toBe(5);
  });
});

describe('completion, help, exit codes, JSON', () => {
  it('bash completion is valid bash and completes commands, subcommands and option choices', async () => {
    const script = await ok(['completion', 'bash']);
    expect(script).toContain('complete -o default -F _coffer coffer');
    const file = path.join(home, 'coffer.bash');
    await writeFile(file, script);
    const complete = (words: string[]) => {
      const cword = words.length - 1;
      const r = spawnSync('bash', ['-c', `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${cword}; _coffer; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      return r.stdout.trim().split('\n').filter(Boolean);
    };
    expect(complete(['coffer', 'lo'])).toEqual(['login', 'logout']);
    expect(complete(['coffer', '-n', 'app', 'secret', 'hi'])).toEqual(['history']);
    expect(complete(['coffer', 'login', ''])).toEqual(expect.arrayContaining(['userpass', 'approle', 'oidc', 'token']));
    expect(complete(['coffer', 'run', '--fa'])).toEqual(['--fallback', '--fallback-max-age']);
    expect(complete(['coffer', 'token', 'lookup', '--format', ''])).toEqual(['table', 'json', 'yaml']);
  });

  it('zsh completion loads through bashcompinit', async () => {
    const script = await ok(['completion', 'zsh']);
    expect(script.startsWith('#compdef coffer')).toBe(true);
    expect(script).toContain('bashcompinit');
    expect(script).toContain('_coffer_node');
    expect((await coffer(['completion', 'fish'])).code).toBe(2);
  });

  it('every command has --help with examples', async () => {
    for (const cmd of [[], ['login'], ['login', 'userpass'], ['login', 'oidc'], ['token', 'renew'], ['config', 'set'], ['run'], ['completion'], ['logout']]) {
      const r = await coffer([...cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Examples:');
    }
    expect((await coffer(['--help'])).stdout).toContain('Exit codes: 0 ok, 1 error, 2 usage, 3 denied');
  });

  it('exit codes: 2 usage, 3 denied, 4 not found, 5 unavailable', async () => {
    expect((await coffer(['token', 'lookup', '--bogus'])).code).toBe(2);
    expect((await coffer(['token', 'lookup'], { env: { HOME: path.join(home, 'empty') } })).code).toBe(3);
    expect((await coffer(['-n', NS, 'secret', 'get', 'no/such'], { env: asRoot() })).code).toBe(4);
    expect((await coffer(['token', 'lookup'], { env: { ...asRoot(), COFFER_ADDR: `http://127.0.0.1:${await freePort()}`, COFFER_RETRY_BUDGET: '0' } })).code).toBe(5);
  });

  it('--format json on login, token and config commands', async () => {
    const caps = JSON.parse(await ok(['-n', NS, 'token', 'capabilities', 'app/db', '--format', 'json'], { env: asRoot() })) as { capabilities: string[] };
    expect(caps.capabilities).toContain('read');
    const lookup = JSON.parse(await ok(['token', 'lookup', '--format', 'json'], { env: asRoot() })) as { policies: string[] };
    expect(lookup.policies).toEqual(['root']);
    const config = JSON.parse(await ok(['config', 'show', '--format', 'json'])) as { selected: string };
    expect(config.selected).toBe('default');
  });
});

describe('the bin launcher and Node 20 --env-file', () => {
  it('`coffer run --env-file FILE` through cli/bin/coffer.js reads the file (Node does not load it into coffer)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-envfile-'));
    try {
      const envFile = path.join(dir, '.env');
      await writeFile(envFile, `FROM_FILE=yes\nREF=coffer://${NS}/refs/one\n`);
      const child = spawn(process.execPath, [CLI_BIN, '-n', NS, 'run', '--prefix', 'app/', '--env-file', envFile, '--', ...printEnv('FROM_FILE', 'REF', 'DB')], {
        env: { PATH: process.env.PATH ?? '', HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code).toBe(0);
      expect(JSON.parse(out)).toEqual({ FROM_FILE: 'yes', REF: V.ref, DB: V.db });

      // A missing file: Node 20 itself exits 9 ("node: FILE: not found") before coffer runs; newer Node
      // leaves it to coffer (exit 1). Either way the command must not run.
      const marker = path.join(dir, 'ran');
      const missing = spawnSync(process.execPath, [CLI_BIN, '-n', NS, 'run', '--env-file', path.join(dir, 'missing.env'), '--', 'node', '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, '')`], {
        env: { PATH: process.env.PATH ?? '', HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken },
        encoding: 'utf8',
      });
      expect(missing.status).not.toBe(0);
      expect(missing.stderr).toContain('missing.env');
      expect(existsSync(marker)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
