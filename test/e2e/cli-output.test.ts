// End to end: the built `coffer` against a real dev server, for what people see and what a
// project directory sets: --format yaml, colour only when wanted, `ns kek status --watch` on a
// rewrap job that takes a few seconds, `ns kek rotate`'s pointer to it, and `coffer setup`'s
// .coffer.yaml (address, namespace, folder) below flags and environment variables.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { CLI_MAIN, freePort, runServerCommand, type CliResult } from '../helpers/process.js';

let dir: string;
let address: string;
let token: string;
let stopServer: () => Promise<unknown>;

/** coffer in `cwd` with exactly `env` (plus PATH and HOME). */
function coffer(args: string[], options: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir };
  for (const [k, v] of Object.entries({ COFFER_ADDR: address, COFFER_TOKEN: token, ...options.env })) if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { env, cwd: options.cwd ?? dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(args: string[], options: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<string> {
  const r = await coffer(args, options);
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'coffer-output-'));
  const port = await freePort();
  // Rewrap one secret per batch, a second apart: a job that `--watch` can see running.
  const run = runServerCommand(['--dev'], {
    COFFER_HOST: '127.0.0.1',
    COFFER_PORT: String(port),
    COFFER_KEK_REWRAP_BATCH_SIZE: '1',
    COFFER_KEK_REWRAP_BATCH_DELAY_MS: '1000',
  });
  stopServer = async () => {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGTERM');
    await run.exited;
  };
  for (let i = 0; i < 900 && !/export COFFER_TOKEN=\S+/.test(run.output()); i++) await new Promise((r) => setTimeout(r, 100));
  const out = run.output();
  address = /export COFFER_ADDR=(\S+)/.exec(out)?.[1] ?? '';
  token = /export COFFER_TOKEN=(\S+)/.exec(out)?.[1] ?? '';
  if (!address || !token) throw new Error(`the dev server did not start:\n${out}`);
  await ok(['ns', 'create', 'app']);
  for (const p of ['prod/db/password', 'prod/api/key', 'dev/db/password']) await ok(['-n', 'app', 'secret', 'put', p, `value=${p}`]);
}, 120_000);

afterAll(async () => {
  await stopServer?.();
  await rm(dir, { recursive: true, force: true });
});

describe('output formats and colour', () => {
  it('--format yaml gives the same data as --format json', async () => {
    const asJson = JSON.parse(await ok(['status', '--format', 'json']));
    const asYaml = parse(await ok(['status', '--format', 'yaml']));
    expect(asYaml).toEqual(asJson);
    expect(parse(await ok(['-n', 'app', 'secret', 'get', 'prod/api/key', '--format', 'yaml']))).toMatchObject({ data: { value: 'prod/api/key' } });
  });

  it('no escape codes in a pipe or with NO_COLOR; bold headers and a coloured seal state when forced', async () => {
    expect(await ok(['status'])).not.toContain('\u001b[');
    expect(await ok(['ns', 'list'], { env: { FORCE_COLOR: '1', NO_COLOR: '1' } })).not.toContain('\u001b[');
    const coloured = await ok(['status'], { env: { FORCE_COLOR: '1' } });
    expect(coloured).toContain('\u001b[1mSealed');
    expect(coloured).toContain('\u001b[32mfalse\u001b[39m');
    // Escape codes take no columns: the values still line up.
    const plain = coloured.replace(/\u001b\[\d+m/g, '');
    expect(plain).toBe(await ok(['status']));
  });
});

describe('KEK rotation progress', () => {
  it('rotate points at --watch, which follows the rewrap job to the end with a line per change (not a terminal)', async () => {
    const rotated = await ok(['ns', 'kek', 'rotate', 'app']);
    expect(rotated).toMatch(/3 DEKs to rewrap\nA background job rewraps them; follow it with: coffer ns kek status app --watch\n/);
    const watched = await coffer(['ns', 'kek', 'status', 'app', '--watch', '--interval', '1']);
    expect(watched.code).toBe(0);
    const lines = watched.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const line of lines) expect(line).toMatch(/^rewrap to v2: \d\/3 rewrapped, \d remaining \((running|completed)\)$/);
    expect(lines.at(-1)).toBe('rewrap to v2: 3/3 rewrapped, 0 remaining (completed)');
    expect(watched.stderr).not.toContain('\r');
    expect(watched.stdout).toMatch(/^Rewrap\s+completed to v2: 3\/3 rewrapped, 0 remaining$/m);
  }, 120_000);
});

describe('coffer setup and .coffer.yaml', () => {
  it('writes the project file, which run/export/secret list use in that tree, below flags and env', async () => {
    const project = path.join(dir, 'project');
    await mkdir(path.join(project, 'src', 'deep'), { recursive: true });
    const wrote = await ok(['setup', '-n', 'app', '--folder', 'prod/'], { cwd: project, env: { COFFER_NAMESPACE: undefined } });
    expect(wrote).toMatch(/Wrote .*\.coffer\.yaml: namespace app, folder prod\//);
    expect(parse(await readFile(path.join(project, '.coffer.yaml'), 'utf8'))).toEqual({ namespace: 'app', folder: 'prod/' });
    const again = await coffer(['setup', '-n', 'other'], { cwd: project });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists \(--force replaces it\)/);

    const deep = path.join(project, 'src', 'deep');
    // No -n, no --prefix: the namespace and folder come from the file two directories up.
    expect(JSON.parse(await ok(['export', '--as', 'json'], { cwd: deep }))).toEqual({ DB_PASSWORD: 'prod/db/password', API_KEY: 'prod/api/key' });
    expect(await ok(['secret', 'list'], { cwd: deep })).toBe('api/\ndb/\n');
    const ran = await ok(['run', '--', 'sh', '-c', 'echo "$DB_PASSWORD"'], { cwd: deep });
    expect(ran).toBe('prod/db/password\n');
    // A flag beats the file; so does the environment.
    expect(JSON.parse(await ok(['export', '--as', 'json', '--prefix', 'dev/'], { cwd: deep }))).toEqual({ DB_PASSWORD: 'dev/db/password' });
    const envWins = await coffer(['export', '--as', 'json'], { cwd: deep, env: { COFFER_NAMESPACE: 'elsewhere' } });
    expect(envWins.code).not.toBe(0);
    expect(envWins.stderr).toMatch(/elsewhere/);
    // The file's address is used when neither --addr nor COFFER_ADDR is given.
    await writeFile(path.join(project, '.coffer.yaml'), `namespace: app\nfolder: prod/\naddress: ${address}\n`);
    expect(await ok(['secret', 'list'], { cwd: deep, env: { COFFER_ADDR: undefined } })).toBe('api/\ndb/\n');
    // Outside the tree nothing applies.
    const outside = await coffer(['secret', 'list'], { cwd: dir, env: { COFFER_NAMESPACE: undefined } });
    expect(outside.code).toBe(2);
    expect(outside.stderr).toMatch(/no namespace: .*coffer setup/);
  }, 120_000);

  it('a broken .coffer.yaml is refused with its path, not ignored', async () => {
    const broken = path.join(dir, 'broken');
    await mkdir(broken);
    await writeFile(path.join(broken, '.coffer.yaml'), 'namespace: app\ntoken: abc\n');
    const r = await coffer(['secret', 'list'], { cwd: broken });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/broken\/\.coffer\.yaml: unknown setting "token"/);
  });
});
