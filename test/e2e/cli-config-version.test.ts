// End to end (issue 12): the CLI's profile file and the server's config file have distinct
// variables (COFFER_CLI_CONFIG, COFFER_CONFIG), the CLI never writes profiles into a server
// config, and `coffer --version`, `coffer version`, `coffer-server --version` print versions.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_MAIN, runCli, type CliResult } from '../helpers/process.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const version = (pkg: string) => (JSON.parse(readFileSync(path.join(root, pkg, 'package.json'), 'utf8')) as { version: string }).version;

let home: string;
let serverConfig: string;
const SERVER_CONFIG = `${JSON.stringify({ port: 8301, logLevel: 'warn' }, null, 2)}\n`;

const coffer = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runCli(args, { env: { HOME: home, ...env } });

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-config-'));
  serverConfig = path.join(home, 'coffer-server.json');
});
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});
beforeEach(async () => {
  await writeFile(serverConfig, SERVER_CONFIG);
  await rm(path.join(home, '.config'), { recursive: true, force: true });
});

describe('COFFER_CONFIG is the server\'s, COFFER_CLI_CONFIG the CLI\'s', () => {
  const defaultFile = () => path.join(home, '.config', 'coffer', 'config.json');

  it('with COFFER_CONFIG naming a server config, the CLI keeps its profiles in its own file', async () => {
    const set = await coffer(['config', 'set', 'address', 'http://127.0.0.1:8301'], { COFFER_CONFIG: serverConfig });
    expect(set.code).toBe(0);
    expect(await readFile(serverConfig, 'utf8')).toBe(SERVER_CONFIG);
    expect(JSON.parse(await readFile(defaultFile(), 'utf8'))).toEqual({ profiles: { default: { address: 'http://127.0.0.1:8301' } } });
    expect(set.stderr).not.toContain('Warning');
  });

  it('refuses to read or write profiles in a server config named by COFFER_CLI_CONFIG', async () => {
    const set = await coffer(['config', 'set', 'address', 'http://127.0.0.1:8301'], { COFFER_CLI_CONFIG: serverConfig });
    expect(set.code).toBe(1);
    expect(set.stderr).toContain(`the config file ${serverConfig}: not a coffer CLI profile file (unknown keys port, logLevel: a server config?)`);
    expect(await readFile(serverConfig, 'utf8')).toBe(SERVER_CONFIG);
    expect(existsSync(defaultFile())).toBe(false);
  });

  it('COFFER_CLI_CONFIG names the profile file; COFFER_CONFIG still works for one, with a warning', async () => {
    const profiles = path.join(home, 'profiles.json');
    await rm(profiles, { force: true });
    expect((await coffer(['--profile', 'prod', 'config', 'set', 'namespace', 'payments'], { COFFER_CLI_CONFIG: profiles })).code).toBe(0);
    expect(JSON.parse(await readFile(profiles, 'utf8'))).toEqual({ profiles: { prod: { namespace: 'payments' } } });
    const old = await coffer(['--profile', 'prod', 'config', 'show', '--format', 'json'], { COFFER_CONFIG: profiles });
    expect(old.code).toBe(0);
    expect(old.stdout).toContain('payments');
    expect(old.stderr).toBe(`Warning: COFFER_CONFIG names the server's config file; for the CLI's profiles use COFFER_CLI_CONFIG=${profiles}\n`);
  });
});

describe('versions', () => {
  it('coffer --version, -V and version print the CLI version', async () => {
    const expected = `${version('cli')}\n`;
    for (const args of [['--version'], ['-V'], ['version'], ['--addr', 'http://127.0.0.1:1', '--version']]) {
      const result = await coffer(args);
      expect({ args, code: result.code, stdout: result.stdout }).toEqual({ args, code: 0, stdout: expected });
    }
    expect(JSON.parse((await coffer(['version', '--format', 'json'])).stdout)).toEqual({ version: version('cli') });
    // After a command name --version is still that command's option.
    const get = await coffer(['secret', 'get', 'x', '--version', 'nope']);
    expect(get.code).toBe(2);
    expect(get.stdout).toBe('');
  });

  it('coffer-server --version and -V print the server version without starting it', async () => {
    for (const flag of ['--version', '-V']) {
      const child = spawn(process.execPath, [SERVER_MAIN, flag], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      expect({ flag, code, stdout }).toEqual({ flag, code: 0, stdout: `${version('server')}\n` });
    }
  });
});
