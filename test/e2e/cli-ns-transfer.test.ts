// End to end: a namespace moved between two real server processes with the CLI —
// `coffer namespace import-key` on the target, `coffer namespace export --to-key` on the source,
// `coffer namespace import` on the target — and what the team expects afterwards: the same secret
// values at the same version numbers, and ciphertexts made on the source decrypting on the target.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { runCli, startServerProcess, type CliResult, type ServerProcess, processScope } from '../helpers/process.js';

const { running, tempDir } = processScope();

describe('coffer namespace export / import between two servers (Shamir seal, PGlite)', () => {
  const dir = tempDir('coffer-cli-nsx-');
  const home = tempDir('coffer-cli-nsx-home-');
  const servers: Record<'source' | 'target', { process?: ServerProcess; token?: string }> = { source: {}, target: {} };
  const run = (on: 'source' | 'target', args: string[], input?: string): Promise<CliResult> =>
    runCli(args, { input, env: { HOME: home, COFFER_ADDR: servers[on].process!.url, ...(servers[on].token ? { COFFER_TOKEN: servers[on].token } : {}) } });
  const ok = async (on: 'source' | 'target', args: string[], input?: string) => {
    const r = await run(on, args, input);
    if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} (${on}) exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(async () => {
    for (const on of ['source', 'target'] as const) {
      const p = await startServerProcess({ COFFER_DATA_DIR: path.join(dir, `data-${on}`) });
      running.push(p);
      servers[on].process = p;
      const init = JSON.parse(await ok(on, ['operator', 'init', '--shares', '1', '--threshold', '1', '--format', 'json'])) as { shares: string[]; root_token: string };
      servers[on].token = init.root_token;
      await ok(on, ['operator', 'unseal', '-'], `${init.shares[0]}\n`);
    }
    await ok('source', ['ns', 'create', 'payments']);
    await ok('source', ['-n', 'payments', 'secret', 'put', 'db/main', 'password=-'], 'first\n');
    await ok('source', ['-n', 'payments', 'secret', 'put', 'db/main', 'password=-'], 'second\n');
    await ok('source', ['-n', 'payments', 'kms', 'key', 'create', 'files', '--type', 'aes256-gcm', '--exportable']);
    await ok('source', ['-n', 'payments', 'kms', 'key', 'create', 'pinned', '--type', 'aes256-gcm']);
  }, 180_000);

  it('moves the namespace: same values and versions, and source ciphertexts decrypt on the target', async () => {
    const ciphertext = (await ok('source', ['-n', 'payments', 'kms', 'encrypt', 'files'], 'made on the source\n')).trim();
    const keyFile = path.join(dir, 'payments-import.pem');
    const bundle = path.join(dir, 'payments.bundle');

    expect(await ok('target', ['namespace', 'import-key', 'payments', '--out', keyFile])).toMatch(/SHA-256\s+[0-9a-f]{64}/);
    expect(await readFile(keyFile, 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);

    const exported = await run('source', ['namespace', 'export', 'payments', '--to-key', keyFile, '--out', bundle]);
    expect(exported.code).toBe(0);
    expect(exported.stderr).toMatch(/not exported.*pinned \(not exportable\)/);
    expect((await stat(bundle)).mode & 0o777).toBe(0o600);
    expect(await readFile(bundle, 'utf8')).not.toContain('second');
    // Never over an existing file.
    expect((await run('source', ['namespace', 'export', 'payments', '--to-key', keyFile, '--out', bundle])).code).not.toBe(0);

    const imported = JSON.parse(await ok('target', ['namespace', 'import', 'payments', bundle, '--format', 'json']));
    expect(imported).toMatchObject({ namespace: 'payments', secrets: 1, versions: 2, keys: 1, skipped_keys: [{ name: 'pinned' }] });
    expect(await ok('target', ['-n', 'payments', 'secret', 'get', 'db/main', '--field', 'password'])).toBe('second');
    expect(await ok('target', ['-n', 'payments', 'secret', 'get', 'db/main', '--version', '1', '--field', 'password'])).toBe('first');
    expect(await ok('target', ['-n', 'payments', 'kms', 'decrypt', 'files'], `${ciphertext}\n`)).toBe('made on the source\n');

    // The import key was spent: the same bundle does not import twice.
    const again = await run('target', ['namespace', 'import', 'payments', bundle]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/not empty/);
    expect((await run('target', ['audit', 'verify'])).code).toBe(0);
  });
});
