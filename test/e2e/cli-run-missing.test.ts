// End to end (issue 12): `coffer run` / `coffer export` never start or print with secrets silently
// missing — a secret the token may list but not read fails them (exit 3) unless --allow-partial,
// a folder the token sees nothing under fails them (exit 4), stderr always says how many variables
// came from where — and `export --format json` is JSON, not dotenv.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCli, startDevServer, type CliResult, type DevServer } from '../helpers/process.js';

const NS = 'e2emissing';
const V = { url: `url-${randomBytes(8).toString('hex')}`, password: `pw-${randomBytes(8).toString('hex')}`, hidden: `hid-${randomBytes(8).toString('hex')}` };

let server: DevServer;
let home: string;
/** A token that may list and read app/, except app/db/password, which it may only list, and app/secret/key, which it may not list. */
let partial: string;

function coffer(args: string[], options: { token?: string; input?: string } = {}): Promise<CliResult> {
  return runCli(args, { input: options.input, env: { HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: options.token ?? server.rootToken } });
}

async function ok(args: string[], options: { token?: string; input?: string } = {}): Promise<string> {
  const result = await coffer(args, options);
  if (result.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

const PRINT_ENV = ['node', '-e', 'process.stdout.write(JSON.stringify(process.env))'];
const marker = (name: string) => path.join(home, name);
const touch = (file: string) => ['node', '-e', `require('fs').writeFileSync(${JSON.stringify(file)}, 'ran')`];

function expectNoValues(text: string): void {
  for (const value of Object.values(V)) expect(text).not.toContain(value);
}

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-missing-'));
  server = await startDevServer();
  await ok(['ns', 'create', NS]);
  await ok(['-n', NS, 'secret', 'put', 'app/url', `url=${V.url}`]);
  await ok(['-n', NS, 'secret', 'put', 'app/db/password', `password=${V.password}`]);
  await ok(['-n', NS, 'secret', 'put', 'app/secret/key', `key=${V.hidden}`]);
  const policy = {
    rules: [
      { namespace: NS, path: 'app/*', capabilities: ['read', 'list'] },
      { namespace: NS, path: 'app/db/password', capabilities: ['read'], effect: 'deny' },
      { namespace: NS, path: 'app/secret/k*', capabilities: ['read', 'list'], effect: 'deny' },
    ],
  };
  await ok(['policy', 'write', 'app-partial', '-'], { input: JSON.stringify(policy) });
  partial = (await ok(['token', 'create', '--policy', 'app-partial'])).trim();
});

afterAll(async () => {
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

describe('coffer run with secrets it cannot read', () => {
  it('does not start the command, names the withheld secret, exits 3', async () => {
    const ran = marker('withheld');
    const result = await coffer(['-n', NS, 'run', '--prefix', 'app/', '--', ...touch(ran)], { token: partial });
    expect(result.code).toBe(3);
    expect(existsSync(ran)).toBe(false);
    expect(result.stderr).toContain(`may list but not read 1 secret(s) under ${NS}:app/: app/db/password`);
    expect(result.stderr).toContain('--allow-partial');
    // A secret the token may not even list is not named (nor are values, ever).
    expect(result.stderr).not.toContain('app/secret');
    expectNoValues(result.stderr);
  });

  it('--allow-partial runs without it and says on stderr what was skipped', async () => {
    const result = await coffer(['-n', NS, 'run', '--prefix', 'app/', '--allow-partial', '--', ...PRINT_ENV], { token: partial });
    expect(result.code).toBe(0);
    const env = JSON.parse(result.stdout) as Record<string, string>;
    expect(env.URL).toBe(V.url);
    expect(env.DB_PASSWORD).toBeUndefined();
    expect(result.stderr).toBe(
      `Warning: skipped 1 secret(s) under ${NS}:app/ this token may not read: app/db/password\ncoffer: injected 1 variable from ${NS}:app/\n`,
    );
  });

  it('with everything readable, runs and says how many variables it injected', async () => {
    const result = await coffer(['-n', NS, 'run', '--prefix', 'app/', '--', ...PRINT_ENV]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ URL: V.url, DB_PASSWORD: V.password, SECRET_KEY: V.hidden });
    expect(result.stderr).toBe(`coffer: injected 3 variables from ${NS}:app/\n`);
  });
});

describe('coffer run with a folder that is missing or empty', () => {
  it('a misspelt --prefix: exit 4, not started, even with --allow-partial', async () => {
    for (const extra of [[], ['--allow-partial']]) {
      const ran = marker(`missing-${extra.length}`);
      const result = await coffer(['-n', NS, 'run', '--prefix', 'ap/', ...extra, '--', ...touch(ran)]);
      expect(result.code).toBe(4);
      expect(existsSync(ran)).toBe(false);
      expect(result.stderr).toMatch(/^Error: no secrets under e2emissing:ap\/; check --ns and --prefix/);
    }
  });

  it('an empty namespace root: exit 4', async () => {
    await ok(['ns', 'create', 'e2eempty']);
    const result = await coffer(['-n', 'e2eempty', 'run', '--', 'true']);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('no secrets under e2eempty:/');
  });

  it('a folder holding only what the token may not list looks missing, as to that token it is: exit 4', async () => {
    const result = await coffer(['-n', NS, 'run', '--prefix', 'app/secret/', '--', 'true'], { token: partial });
    expect(result.code).toBe(4);
    expect(result.stderr).not.toContain('key');
    expectNoValues(result.stderr);
  });
});

describe('coffer export', () => {
  it('refuses a partial set (exit 3, nothing printed) unless --allow-partial', async () => {
    const refused = await coffer(['-n', NS, 'export', '--prefix', 'app/'], { token: partial });
    expect(refused.code).toBe(3);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain('app/db/password');
    const allowed = await coffer(['-n', NS, 'export', '--prefix', 'app/', '--allow-partial'], { token: partial });
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toBe(`URL="${V.url}"\n`);
    expect(allowed.stderr).toContain('skipped 1 secret(s)');
    expect(allowed.stderr).toContain(`coffer: exported 1 variable from ${NS}:app/\n`);
  });

  it('a missing folder: exit 4, nothing printed', async () => {
    const result = await coffer(['-n', NS, 'export', '--prefix', 'nope/']);
    expect(result.code).toBe(4);
    expect(result.stdout).toBe('');
  });

  it('--format json prints JSON (as --as json); a conflicting or table --format is refused (exit 2)', async () => {
    const asJson = await coffer(['-n', NS, 'export', '--prefix', 'app/', '--format', 'json']);
    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.stdout)).toEqual({ URL: V.url, DB_PASSWORD: V.password, SECRET_KEY: V.hidden });
    expect(JSON.parse(await ok(['--format', 'json', '-n', NS, 'export', '--prefix', 'app/', '--as', 'json']))).toHaveProperty('URL', V.url);
    const conflict = await coffer(['-n', NS, 'export', '--prefix', 'app/', '--format', 'json', '--as', 'shell']);
    expect(conflict.code).toBe(2);
    expect(conflict.stdout).toBe('');
    expect(conflict.stderr).toContain('--format json and --as shell disagree');
    const table = await coffer(['-n', NS, 'export', '--format', 'table']);
    expect(table.code).toBe(2);
    expect(table.stdout).toBe('');
    expect(table.stderr).toContain('choose one with --as dotenv|json|shell|github|gitlab');
    // Without --format, --as decides as before.
    expect(await ok(['-n', NS, 'export', '--prefix', 'app/', '--as', 'shell'])).toContain(`export URL='${V.url}'\n`);
  });
});
