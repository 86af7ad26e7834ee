// End to end: `coffer operator backup`, `backup verify` and `restore` against real server processes,
// and a recovery drill: the server and its database are lost (process killed, data directory
// deleted); a new server refuses an edited copy of the backup, restores the genuine file with the
// original shares (which prove it and unseal the server), serves every secret version, and its
// audit chain verifies.
import { rmSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli, startServerProcess, type CliResult, type ServerProcess, processScope } from '../helpers/process.js';
import { rehash } from '../helpers/backup.js';

const { tempDir, start } = processScope();


describe('coffer operator backup / restore, and a recovery drill (Shamir seal, PGlite)', () => {
  const dir = tempDir('coffer-cli-backup-');
  const home = tempDir('coffer-cli-backup-home-');
  const file = path.join(dir, 'coffer.backup');
  const sharesFile = path.join(dir, 'shares.txt');
  let server: ServerProcess;
  let token: string | undefined;
  let shares: string[];
  const run = (args: string[], input?: string): Promise<CliResult> =>
    runCli(args, { input, env: { HOME: home, COFFER_ADDR: server.url, ...(token ? { COFFER_TOKEN: token } : {}) } });
  const ok = async (args: string[], input?: string) => {
    const r = await run(args, input);
    if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(async () => {
    server = await start({ COFFER_DATA_DIR: path.join(dir, 'data-a') });
    const init = JSON.parse(await ok(['operator', 'init', '--shares', '3', '--threshold', '2', '--format', 'json'])) as { shares: string[]; root_token: string };
    shares = init.shares;
    token = init.root_token;
    for (const share of shares.slice(0, 2)) await ok(['operator', 'unseal', '-'], `${share}\n`);
    await writeFile(sharesFile, `${shares[0]}\n${shares[1]}\n`, { mode: 0o600 });
    await ok(['ns', 'create', 'ops']);
    await ok(['-n', 'ops', 'secret', 'put', 'db', 'password=-'], 'first\n');
    await ok(['-n', 'ops', 'secret', 'put', 'db', 'password=-'], 'second\n');
  }, 120_000);

  it('writes a complete backup 0600, refuses to overwrite it without --force, and verifies it', async () => {
    const out = await ok(['operator', 'backup', '--out', file]);
    expect(out).toMatch(/^Rows\s+\d+$/m);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = await run(['operator', 'backup', '--out', file]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/exists.*--force/);
    expect((await run(['operator', 'backup', '--out', file, '--force'])).code).toBe(0);
    expect(await ok(['operator', 'backup', 'verify', file])).toMatch(/SHA-256: OK/);
    const proved = JSON.parse(await ok(['operator', 'backup', 'verify', file, '--server', '--format', 'json'])) as { ok: boolean; values: { opened: number } };
    expect(proved).toMatchObject({ ok: true, values: { opened: 2, failed: 0 } });
  });

  it('proves a backup offline with the original shares: every key opens; an edit with a recomputed SHA-256 does not', async () => {
    const proved = JSON.parse(await ok(['operator', 'backup', 'verify', file, '--shares-file', sharesFile, '--format', 'json'])) as Record<string, unknown>;
    expect(proved).toMatchObject({ ok: true, root_check: true, digest: true, values: { opened: 2, failed: 0 }, failures: [] });
    // From stdin too (the way a prompt is answered when there is no terminal).
    expect(await ok(['operator', 'backup', 'verify', file, '--shares'], `${shares[2]}\n${shares[1]}\n`)).toMatch(/Sealed digest\s+true/);
    const forged = path.join(dir, 'forged-offline.backup');
    await writeFile(forged, rehash((await readFile(file, 'utf8')).replace('"ops"', '"opz"')));
    const caught = await run(['operator', 'backup', 'verify', forged, '--shares-file', sharesFile, '--format', 'json']);
    expect(caught.code).not.toBe(0);
    expect(JSON.parse(caught.stdout)).toMatchObject({ ok: false, digest: false, root_check: true });
    const wrong = await run(['operator', 'backup', 'verify', file, '--shares'], `${shares[0]}\n${shares[0]}\n`);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/distinct original unseal shares/);
    for (const share of shares) expect(wrong.stderr + wrong.stdout).not.toContain(share);
    const both = await run(['operator', 'backup', 'verify', file, '--server', '--shares-file', sharesFile]);
    expect(both.code).not.toBe(0);
  });

  it('refuses an edited backup offline, and restore into an initialised server', async () => {
    const edited = path.join(dir, 'edited.backup');
    await writeFile(edited, (await readFile(file, 'utf8')).replace('"ops"', '"opz"'));
    const offline = await run(['operator', 'backup', 'verify', edited]);
    expect(offline.code).not.toBe(0);
    expect(offline.stderr).toMatch(/SHA-256/);
    const restore = await run(['operator', 'restore', file]);
    expect(restore.code).not.toBe(0);
    expect(restore.stderr).toMatch(/already initialised/);
  });

  it('recovery drill: server and database lost; a new server refuses an edited copy, restores the backup with the original shares', async () => {
    await server.stop('SIGKILL');
    rmSync(path.join(dir, 'data-a'), { recursive: true, force: true });
    server = await start({ COFFER_DATA_DIR: path.join(dir, 'data-b') });
    // An edit with a recomputed SHA-256 passes the offline checks, but not the restore.
    const forged = path.join(dir, 'forged.backup');
    await writeFile(forged, rehash((await readFile(file, 'utf8')).replace('"ops"', '"opz"')));
    expect((await run(['operator', 'backup', 'verify', forged])).code).toBe(0);
    const refused = await run(['operator', 'restore', forged, '--shares-file', sharesFile]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/sealed digest does not open/);
    // No shares on stdin: refused, nothing written.
    const noShares = await run(['operator', 'restore', file], '');
    expect(noShares.code).not.toBe(0);
    expect(noShares.stderr).toMatch(/no original unseal shares given/i);
    expect(JSON.parse((await run(['status', '--format', 'json'])).stdout)).toMatchObject({ initialized: false });
    // The original shares on stdin: restored, and unsealed by them.
    const restored = JSON.parse(await ok(['operator', 'restore', file, '--format', 'json'], `${shares[2]}\n${shares[0]}\n`)) as { sealed: boolean };
    expect(restored.sealed).toBe(false);
    expect((await run(['status'])).code).toBe(0);
    expect(await ok(['-n', 'ops', 'secret', 'get', 'db', '--field', 'password'])).toBe('second');
    expect(await ok(['-n', 'ops', 'secret', 'get', 'db', '--version', '1', '--field', 'password'])).toBe('first');
    expect((await run(['audit', 'verify'])).code).toBe(0);
    // Sealed again, the original shares open it.
    await ok(['operator', 'seal']);
    expect((await run(['status'])).code).toBe(5);
    await ok(['operator', 'unseal', '--shares-file', sharesFile]);
    expect((await run(['status'])).code).toBe(0);
  });
});
