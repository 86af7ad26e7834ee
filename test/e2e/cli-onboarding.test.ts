// End to end, the built `coffer` against real server processes, as a new operator meets it:
// shares written to and read from 0600 files (init --shares-out, unseal --shares-file,
// approle secret-id --out), error messages that name CLI commands and flags instead of API
// routes (sealed, ns delete, login lockout), and TLS failures that say what to do
// (untrusted CA, name mismatch, http:// against HTTPS) with COFFER_TLS_SERVER_NAME and
// COFFER_SKIP_VERIFY.
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort, runCli, runServerCommand, startServerProcess, type CliResult, type ServerProcess } from '../helpers/process.js';
import { CertDir } from '../helpers/tls.js';

const stops: Array<() => Promise<unknown>> = [];
const cleanups: Array<() => void> = [];
afterAll(async () => {
  await Promise.all(stops.map((stop) => stop()));
  for (const c of cleanups) c();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = async (file: string) => ((await stat(file)).mode & 0o777).toString(8);

describe('operator files and CLI-worded errors (Shamir seal, PGlite)', () => {
  const dir = tempDir('coffer-onboard-');
  let server: ServerProcess;
  let token: string | undefined;
  const coffer = (args: string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<CliResult> =>
    runCli(args, { input: options.input, env: { HOME: dir, COFFER_ADDR: server.url, COFFER_TOKEN: token, ...options.env } });
  const ok = async (args: string[], options: { input?: string } = {}) => {
    const r = await coffer(args, options);
    if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };

  /** The server's JSON log lines so far. */
  const logLines = () =>
    server
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; code?: string; [k: string]: unknown });

  beforeAll(async () => {
    server = await startServerProcess({
      COFFER_DATA_DIR: path.join(dir, 'data'),
      // Two failures lock a user out for a minute: long enough that the CLI must report the wait.
      COFFER_LOGIN_MAX_FAILURES: '2',
      COFFER_LOGIN_LOCKOUT_SECONDS: '60',
    });
    stops.push(() => server.stop('SIGKILL'));
  });

  it('init --shares-out writes the shares to a new 0600 file, refuses an existing one, and the token still shows once', async () => {
    const existing = path.join(dir, 'existing.txt');
    await writeFile(existing, 'keep me\n');
    const refused = await coffer(['operator', 'init', '--shares', '3', '--threshold', '2', '--shares-out', existing]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/existing\.txt already exists; it is not overwritten/);
    expect(await readFile(existing, 'utf8')).toBe('keep me\n');
    expect(JSON.parse((await coffer(['status', '--format', 'json'])).stdout)).toMatchObject({ initialized: false });

    const sharesFile = path.join(dir, 'shares.txt');
    const out = await ok(['operator', 'init', '--shares', '3', '--threshold', '2', '--shares-out', sharesFile]);
    expect(await mode(sharesFile)).toBe('600');
    const shares = (await readFile(sharesFile, 'utf8')).trim().split('\n');
    expect(shares).toHaveLength(3);
    for (const share of shares) expect(out).not.toContain(share);
    expect(out).toMatch(/3 unseal shares written to .*shares\.txt \(mode 0600\)/);
    token = /^Root token\s+(\S+)$/m.exec(out)?.[1];
    expect(token).toMatch(/^eyJ/);
  });

  it('a sealed server: the error names `coffer operator unseal`, not an API route (exit 5)', async () => {
    const sealed = await coffer(['ns', 'list']);
    expect(sealed.code).toBe(5);
    expect(sealed.stderr).toMatch(/Coffer is sealed: run `coffer operator unseal`/);
    expect(sealed.stderr).not.toMatch(/\/v1\//);
    // The server logs the initialisation at info, and a request refused while sealed not as an error.
    const log = logLines();
    expect(log.filter((l) => l.msg === 'initialised')).toEqual([expect.objectContaining({ level: 30, seal_type: 'shamir', shares: 3, threshold: 2 })]);
    expect(log.filter((l) => l.code === 'sealed' && l.level >= 40)).toEqual([]);
  });

  it('unseal --shares-file applies the shares in turn: too few leave it sealed and say so; enough unseal it', async () => {
    const shares = (await readFile(path.join(dir, 'shares.txt'), 'utf8')).trim().split('\n');
    const one = path.join(dir, 'one-share.txt');
    await writeFile(one, `${shares[0]}\n`, { mode: 0o600 });
    const partial = await coffer(['operator', 'unseal', '--shares-file', one]);
    expect(partial.code).toBe(0);
    expect(partial.stdout).toMatch(/^Unseal progress\s+1\/2$/m);
    expect(partial.stderr).toMatch(/Applied 1 share; still sealed: 1 more share needed/);
    await ok(['operator', 'unseal', '--reset']);

    const usage = await coffer(['operator', 'unseal', 'abc', '--shares-file', one]);
    expect(usage.code).toBe(2);

    const done = await ok(['operator', 'unseal', '--shares-file', path.join(dir, 'shares.txt'), '--format', 'json']);
    expect(JSON.parse(done)).toMatchObject({ sealed: false });
    expect(logLines().filter((l) => l.msg === 'unsealed')).toEqual([expect.objectContaining({ level: 30, root_version: 1 })]);
  });

  it('ns delete of a namespace with secrets says to use --force', async () => {
    await ok(['ns', 'create', 'team']);
    await ok(['-n', 'team', 'secret', 'put', 'a', 'v=1']);
    const refused = await coffer(['ns', 'delete', 'team']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/holds 1 secret\(s\); delete them first or use --force/);
    expect(refused.stderr).not.toMatch(/force=true/);
    await ok(['ns', 'delete', 'team', '--force']);
  });

  it('approle secret-id --out writes a 0600 file that logs in, and never overwrites', async () => {
    await ok(['approle', 'write', 'deployer', '--policy', 'default']);
    const file = path.join(dir, 'secret-id.txt');
    const out = await ok(['approle', 'secret-id', 'deployer', '--out', file]);
    expect(out).toMatch(/written to .*secret-id\.txt \(mode 0600\)/);
    expect(await mode(file)).toBe('600');
    const secretId = (await readFile(file, 'utf8')).trim();
    expect(out).not.toContain(secretId);
    const again = await coffer(['approle', 'secret-id', 'deployer', '--out', file]);
    expect(again.code).toBe(1);
    expect((await readFile(file, 'utf8')).trim()).toBe(secretId);

    const roleId = (await ok(['approle', 'role-id', 'deployer'])).trim();
    const login = await coffer(['login', 'approle', '--role-id', roleId, '--secret-id-file', file, '--token-only'], { env: { COFFER_TOKEN: undefined } });
    expect(login.code).toBe(0);
  });

  it('a locked-out login says how long to wait and exits 3', async () => {
    await ok(['user', 'put', 'alice', '--policy', 'default'], { input: 'right-password\n' });
    const attempt = () => coffer(['login', 'userpass', '-u', 'alice', '--token-only'], { input: 'wrong-password\n', env: { COFFER_TOKEN: undefined } });
    let last = await attempt();
    for (let i = 0; i < 4 && last.stderr.includes('login_failed'); i++) last = await attempt();
    expect(last.code).toBe(3);
    expect(last.stderr).toMatch(/too many login attempts: wait \d+ s and try again/);
    const seconds = Number(/wait (\d+) s/.exec(last.stderr)?.[1]);
    expect(seconds).toBeGreaterThan(1);
    expect(seconds).toBeLessThanOrEqual(60);
  });

  it('operator seal is logged at info', async () => {
    await ok(['operator', 'seal']);
    expect(logLines().filter((l) => l.msg === 'sealed')).toEqual([expect.objectContaining({ level: 30, by: 'operator' })]);
  });
});

describe('TLS failures come with a hint', () => {
  const certs = new CertDir();
  cleanups.push(() => certs.cleanup());
  const home = tempDir('coffer-onboard-tls-');
  // A certificate for coffer.internal only: connecting to 127.0.0.1 is a name mismatch.
  const cert = certs.server('internal', 'coffer.internal', 'DNS:coffer.internal');
  let address: string;

  beforeAll(async () => {
    const port = await freePort();
    const run = runServerCommand([], {
      COFFER_HOST: '127.0.0.1',
      COFFER_PORT: String(port),
      COFFER_DEV: 'true',
      COFFER_TLS_CERT_FILE: cert.certFile,
      COFFER_TLS_KEY_FILE: cert.keyFile,
    });
    stops.push(async () => {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
      await run.exited;
    });
    address = `https://127.0.0.1:${port}`;
    let ended = false;
    void run.exited.then(() => (ended = true));
    // It logs "coffer listening" once its socket accepts connections (a loaded machine may take a while).
    for (let i = 0; i < 900 && !run.output().includes('coffer listening') && !ended; i++) await new Promise((r) => setTimeout(r, 100));
    if (!run.output().includes('coffer listening')) throw new Error(`the TLS server did not start:\n${run.output()}`);
  }, 90_000);

  const status = (addr: string, env: Record<string, string> = {}) => runCli(['status'], { env: { HOME: home, COFFER_ADDR: addr, ...env } });

  it('an untrusted CA: points at COFFER_CACERT', async () => {
    const r = await status(address);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/DEPTH_ZERO_SELF_SIGNED_CERT/);
    expect(r.stderr).toMatch(/^Hint: .*CA this machine does not trust: set COFFER_CACERT=/m);
  });

  it('a name mismatch: names the certificate\'s names and COFFER_TLS_SERVER_NAME, which then works', async () => {
    const r = await status(address, { COFFER_CACERT: cert.certFile });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/^Hint: the server's certificate is for coffer\.internal, not 127\.0\.0\.1\. .*COFFER_TLS_SERVER_NAME=NAME/m);
    const named = await status(address, { COFFER_CACERT: cert.certFile, COFFER_TLS_SERVER_NAME: 'coffer.internal' });
    expect(named.code).toBe(0);
    expect(named.stdout).toMatch(/^Sealed\s+false$/m);
  });

  it('http:// against the HTTPS server: says to use https://', async () => {
    const r = await status(address.replace('https:', 'http:'));
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(new RegExp(`^Hint: the server speaks HTTPS: use ${address.replace(/[.]/g, '\\.')} `, 'm'));
  });

  it('COFFER_SKIP_VERIFY connects without verifying, and warns loudly on stderr', async () => {
    const r = await status(address, { COFFER_SKIP_VERIFY: '1' });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^WARNING: COFFER_SKIP_VERIFY is set: the server's TLS certificate is NOT verified/m);
  });
});
