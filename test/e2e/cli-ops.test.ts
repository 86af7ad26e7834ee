// End to end: the key-lifecycle commands of the built `coffer` CLI (operator rotate-root/verify,
// generate-root, seal-migrate, ns kek/update/shred, byok, escrow) against a real server process
// on PGlite that is restarted to prove a Shamir root rotation took effect. With SoftHSM2, also the
// PKCS#11 seal's init (recovery shares), one-step rotation, generate-root and migration to Shamir.

import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describeIfSoftHsm } from '../helpers/env.js';
import { runCli, startServerProcess, type CliResult, type ServerProcess, processScope } from '../helpers/process.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

const { tempDir, start, defer } = processScope();

interface Cli {
  run(args: string[], options?: { input?: string; token?: string }): Promise<CliResult>;
  ok(args: string[], options?: { input?: string; token?: string }): Promise<string>;
  json<T = Record<string, unknown>>(args: string[], options?: { input?: string; token?: string }): Promise<T>;
}

function cli(home: string, url: () => string, rootToken: () => string | undefined): Cli {
  const run = (args: string[], options: { input?: string; token?: string } = {}) =>
    runCli(args, { input: options.input, env: { HOME: home, COFFER_ADDR: url(), COFFER_TOKEN: options.token ?? rootToken() } });
  const ok = async (args: string[], options: { input?: string; token?: string } = {}) => {
    const r = await run(args, options);
    if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  return { run, ok, json: async <T>(args: string[], options = {}) => JSON.parse(await ok([...args, '--format', 'json'], options)) as T };
}

const oaep = (key: string) => ({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' });

describe('coffer key-lifecycle commands against a real server (Shamir seal, PGlite)', () => {
  const dir = tempDir('coffer-cli-ops-');
  const home = tempDir('coffer-cli-ops-home-');
  const dataDir = path.join(dir, 'data');
  let server: ServerProcess;
  let token: string | undefined;
  let shares: string[];
  const c = cli(home, () => server.url, () => token);
  /** The BYOK key material, to compare with what escrow exports. */
  let imported: { version: number; material: Buffer } | undefined;

  beforeAll(async () => {
    server = await start({ COFFER_DATA_DIR: dataDir });
    const init = await c.json<{ shares: string[]; threshold: number; root_token: string }>(['operator', 'init', '--shares', '3', '--threshold', '2']);
    expect(init.threshold).toBe(2);
    shares = init.shares;
    token = init.root_token;
    for (const share of shares.slice(0, 2)) await c.ok(['operator', 'unseal', '-'], { input: `${share}\n` });
    await c.ok(['ns', 'create', 'ops']);
    await c.ok(['-n', 'ops', 'secret', 'put', 'db', 'password=-'], { input: 'before-rotation\n' });
  });

  it('shows, rotates and schedules the KEK: ns kek status|rotate, ns update --rotation-period', async () => {
    const before = await c.json<{ current_version: number; rotation_period: number | null; versions: unknown[] }>(['ns', 'kek', 'status', 'ops']);
    expect(before).toMatchObject({ current_version: 1, rotation_period: null });
    const rotated = await c.json<{ version: number; origin: string; deks_to_rewrap: number }>(['ns', 'kek', 'rotate', 'ops']);
    expect(rotated).toMatchObject({ version: 2, origin: 'generated', deks_to_rewrap: 1 });
    expect(await c.ok(['ns', 'kek', 'status', 'ops'])).toMatch(/^Current version\s+2$/m);
    expect(await c.ok(['ns', 'kek', 'status', 'ops'])).toMatch(/^v1\s+(retiring|retired)\s+generated\s+\d+/m);

    await c.ok(['ns', 'update', 'ops', '--rotation-period', '90d']);
    expect((await c.json(['ns', 'kek', 'status', 'ops'])).rotation_period).toBe(90 * 86_400);
    await c.ok(['ns', 'update', 'ops', '--rotation-period', 'off']);
    expect((await c.json(['ns', 'kek', 'status', 'ops'])).rotation_period).toBeNull();
    // Refused by the CLI (not a duration) and by the server (under an hour): usage error / 400, nothing changes.
    expect((await c.run(['ns', 'update', 'ops', '--rotation-period', 'soon'])).code).toBe(2);
    const short = await c.run(['ns', 'update', 'ops', '--rotation-period', '10m']);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/rotation_period is at least 3600 seconds/);
    expect((await c.run(['ns', 'update', 'ops'])).code).toBe(2);
    expect(await c.ok(['-n', 'ops', 'secret', 'get', 'db', '--field', 'password'])).toBe('before-rotation');
  });

  it('schedules and cancels a shred: ns shred --days, ns shred cancel', async () => {
    await c.ok(['ns', 'create', 'doomed']);
    await c.ok(['-n', 'doomed', 'secret', 'put', 'x', 'v=1']);
    const scheduled = await c.json<{ deletion_date: string | null }>(['ns', 'shred', 'doomed', '--days', '7']);
    const days = (Date.parse(scheduled.deletion_date!) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThan(7.1);
    const disabled = await c.run(['-n', 'doomed', 'secret', 'get', 'x']);
    expect(disabled.code).toBe(1);
    expect(disabled.stderr).toContain('namespace_disabled');
    expect((await c.json(['ns', 'kek', 'status', 'doomed'])).deletion_date).toBe(scheduled.deletion_date);
    expect(await c.ok(['ns', 'shred', 'cancel', 'doomed'])).toMatch(/no shred scheduled/);
    expect(await c.ok(['-n', 'doomed', 'secret', 'get', 'x', '--field', 'v'])).toBe('1');
    // Out of the 7-30 day window: the server's 400, and nothing scheduled.
    const tooShort = await c.run(['ns', 'shred', 'doomed', '--days', '3']);
    expect(tooShort.code).toBe(1);
    expect((await c.json(['ns', 'kek', 'status', 'doomed'])).deletion_date).toBeNull();
    expect((await c.run(['ns', 'shred', 'cancel', 'nope'])).code).toBe(4);
  });

  it('imports BYOK key material: byok params saves the key and token, byok import makes an external KEK version', async () => {
    const pem = path.join(dir, 'wrapping-key.pem');
    const tokenFile = path.join(dir, 'import-token.txt');
    const params = await c.json<{ import_token: string; algorithm: string }>(['byok', 'params', 'ops', '--public-key-out', pem, '--token-out', tokenFile]);
    expect(params.algorithm).toBe('RSAES_OAEP_SHA_256');
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
    expect((await readFile(tokenFile, 'utf8')).trim()).toBe(params.import_token);
    const material = randomBytes(32);
    const wrappedFile = path.join(dir, 'wrapped.bin');
    await writeFile(wrappedFile, publicEncrypt(oaep(await readFile(pem, 'utf8')), material));

    const result = await c.json<{ version: number; origin: string }>(['byok', 'import', 'ops', '--token-file', tokenFile, '--wrapped-file', wrappedFile]);
    expect(result).toMatchObject({ version: 3, origin: 'external' });
    imported = { version: result.version, material };
    expect(await c.ok(['ns', 'kek', 'status', 'ops'])).toMatch(/^v3\s+active\s+external/m);
    await c.ok(['-n', 'ops', 'secret', 'put', 'byok', 'v=under-imported-key']);
    expect(await c.ok(['-n', 'ops', 'secret', 'get', 'byok', '--field', 'v'])).toBe('under-imported-key');

    // One attempt per token: the second import is refused (410 gone).
    const again = await c.run(['byok', 'import', 'ops', '--import-token', params.import_token, '--wrapped-file', wrappedFile]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('code gone');
    expect((await c.run(['byok', 'import', 'ops', '--wrapped-file', wrappedFile])).code).toBe(2);
  });

  it('exports a KEK version under the two-person rule: escrow request, approve by another admin, download once', async () => {
    expect(imported).toBeDefined();
    await c.ok(['policy', 'write', 'escrow-admin', '-'], { input: JSON.stringify({ rules: [{ namespace: '*', path: '*', capabilities: ['admin'] }] }) });
    const bob = (await c.ok(['token', 'create', '--policy', 'escrow-admin', '--display-name', 'bob'])).trim();

    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const pub = path.join(dir, 'escrow.pub');
    await writeFile(pub, publicKey.export({ type: 'spki', format: 'pem' }));
    const req = await c.json<{ id: string; state: string; kek_version: number }>([
      'escrow', 'request', 'ops', '--version', String(imported!.version), '--public-key', pub, '--ttl', '1h',
    ]);
    expect(req).toMatchObject({ state: 'pending', kek_version: imported!.version });
    expect(await c.ok(['escrow', 'list', '--ns', 'ops'])).toMatch(new RegExp(`^${req.id}\\s+v3\\s+pending\\s`, 'm'));

    const self = await c.run(['escrow', 'approve', req.id]);
    expect(self.code).toBe(3); // the requester cannot approve
    expect(self.stderr).toContain('two-person rule');
    const early = path.join(dir, 'early.wrapped');
    expect((await c.run(['escrow', 'download', req.id, '--out', early])).code).toBe(1); // not approved yet: 409
    await expect(stat(early)).rejects.toThrow(); // and no empty file left behind

    expect(await c.json(['escrow', 'approve', req.id], { token: bob })).toMatchObject({ state: 'approved', approved_by: 'token:bob' });
    expect(await c.ok(['escrow', 'show', req.id])).toMatch(/^State\s+approved$/m);
    const out = path.join(dir, 'kek.wrapped');
    const downloaded = await c.run(['escrow', 'download', req.id, '--out', out]);
    expect(downloaded.code).toBe(0);
    expect(downloaded.stdout).not.toContain((await readFile(out)).toString('base64').slice(0, 24)); // key material only in the file
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(privateDecrypt(oaep(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()), await readFile(out)).equals(imported!.material)).toBe(true);

    const second = await c.run(['escrow', 'download', req.id, '--out', path.join(dir, 'again.wrapped')]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('code gone');
    expect((await c.run(['escrow', 'download', req.id, '--out', out])).stderr).toMatch(/must not exist yet/); // never overwritten
    expect(await c.json(['-n', 'ops', 'escrow', 'list'])).toMatchObject({ requests: [{ id: req.id, state: 'downloaded' }] });
  });

  it('makes a new root token from the unseal shares: operator generate-root', async () => {
    const result = await c.json<{ complete: boolean; root_token: string }>(['operator', 'generate-root'], { input: `${shares[2]}\n${shares[0]}\n` });
    expect(result.complete).toBe(true);
    expect(await c.ok(['ns', 'get', 'ops'], { token: result.root_token })).toMatch(/^Name\s+ops$/m);
    // Table format: only the token on stdout.
    const plain = await c.run(['operator', 'generate-root', '--shares-file', '-'], { input: shares.slice(0, 2).join('\n') });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^\S+\n$/);
    // Too few shares: exit 1 with the progress; --reset abandons it.
    const partial = await c.run(['operator', 'generate-root'], { input: `${shares[0]}\n` });
    expect(partial.code).toBe(1);
    expect(partial.stdout).toMatch(/^Progress\s+1\/2$/m);
    expect(partial.stderr).toContain('1 more share(s) needed');
    expect(await c.json(['operator', 'generate-root', '--reset'])).toMatchObject({ progress: 0, complete: false });
  });

  it('rotates the Shamir root key in two steps; after a restart only the new shares unseal', async () => {
    // Wrong current shares: refused, and the --new-shares-out file is not left behind.
    const sharesOut = path.join(dir, 'new-shares.txt');
    const refused = await c.run(['operator', 'rotate-root', '--new-shares-out', sharesOut], { input: `${shares[1]}\n${shares[1]}\n` });
    expect(refused.code).toBe(1);
    await expect(stat(sharesOut)).rejects.toThrow();
    const rotate = await c.json<{ state: string; shares_file: string; threshold: number; root_version: number }>(
      ['operator', 'rotate-root', '--new-shares', '4', '--new-threshold', '3', '--new-shares-out', sharesOut],
      { input: `${shares[1]}\n${shares[2]}\n` },
    );
    expect(rotate).toMatchObject({ state: 'pending_verification', threshold: 3, shares_file: sharesOut });
    expect(rotate).not.toHaveProperty('shares');
    expect((await stat(sharesOut)).mode & 0o777).toBe(0o600);
    const pending = { ...rotate, shares: (await readFile(sharesOut, 'utf8')).trim().split('\n') };
    expect(pending.shares).toHaveLength(4);
    // The old shares are not the new ones: verification refuses them.
    expect((await c.run(['operator', 'rotate-root', 'verify'], { input: shares.join('\n') })).code).toBe(1);
    // --shares-file, as README and --help show it (rotate-root's own --shares-file once swallowed it).
    const newSharesFile = path.join(dir, 'verify-shares.txt');
    await writeFile(newSharesFile, `${pending.shares.slice(1).join('\n')}\n`, { mode: 0o600 });
    const done = await c.json<{ state: string; root_version: number }>(['operator', 'rotate-root', 'verify', '--shares-file', newSharesFile]);
    expect(done).toMatchObject({ state: 'completed', root_version: pending.root_version });
    expect((await c.json(['status'])).root_version).toBe(pending.root_version);

    expect(await server.stop('SIGTERM')).toBe(0);
    server = await start({ COFFER_DATA_DIR: dataDir });
    expect((await c.run(['status'])).code).toBe(5);
    // The old shares no longer unseal (three of them: the new threshold).
    for (const share of shares) await c.run(['operator', 'unseal', '-'], { input: share });
    expect((await c.run(['status'])).code).toBe(5);
    await c.ok(['operator', 'unseal', '--reset']);
    for (const share of pending.shares.slice(0, 3)) await c.ok(['operator', 'unseal', '-'], { input: share });
    expect(await c.json(['status'])).toMatchObject({ sealed: false, root_version: pending.root_version });
    expect(await c.ok(['-n', 'ops', 'secret', 'get', 'db', '--field', 'password'])).toBe('before-rotation');
    expect(await c.ok(['-n', 'ops', 'secret', 'get', 'byok', '--field', 'v'])).toBe('under-imported-key');
  });
});

describeIfSoftHsm('coffer operator commands with the PKCS#11 seal (SoftHSM2)', () => {
  let hsm: SoftHsm;
  let server: ServerProcess;
  let token: string | undefined;
  const home = tempDir('coffer-cli-ops-hsm-home-');
  const c = cli(home, () => server.url, () => token);
  beforeAll(() => {
    hsm = createSoftHsm(['cli-ops']);
    defer(() => hsm.cleanup());
  });

  it('init prints recovery shares; rotate-root is one step; generate-root takes recovery shares; seal-migrate --to shamir', async () => {
    server = await start({ COFFER_DATA_DIR: tempDir('coffer-cli-ops-hsm-'), ...hsm.env('cli-ops') });
    const text = await c.ok(['operator', 'init', '--shares', '3', '--threshold', '2']);
    expect(text).toMatch(/^Recovery share 3\s+\S+$/m);
    expect(text).not.toMatch(/Unseal share/);
    token = /^Root token\s+(\S+)$/m.exec(text)![1];
    const recovery = [...text.matchAll(/^Recovery share \d\s+(\S+)$/gm)].map((m) => m[1]!);
    expect(recovery).toHaveLength(3);
    expect(await c.json(['status'])).toMatchObject({ sealed: false, seal_type: 'pkcs11', recovery_seal: true });
    await c.ok(['ns', 'create', 'hsm']);
    await c.ok(['-n', 'hsm', 'secret', 'put', 's', 'v=hsm']);

    const rotated = await c.json<{ state: string; key_label: string; root_version: number }>(['operator', 'rotate-root'], { input: '' });
    expect(rotated).toMatchObject({ seal_type: 'pkcs11', root_version: 2 });
    expect(rotated.key_label).toMatch(/-v2$/);

    const generated = await c.json<{ root_token: string }>(['operator', 'generate-root'], { input: recovery.slice(0, 2).join('\n') });
    expect(await c.ok(['ns', 'get', 'hsm'], { token: generated.root_token })).toMatch(/^Name\s+hsm$/m);

    const migrated = await c.json<{ seal_type: string; message: string }>(['operator', 'seal-migrate', '--to', 'shamir'], { input: recovery.slice(1).join('\n') });
    expect(migrated.seal_type).toBe('shamir');
    expect((await c.json(['status'])).seal_type).toBe('shamir');
    expect(await c.ok(['-n', 'hsm', 'secret', 'get', 's', '--field', 'v'])).toBe('hsm');
    expect((await c.run(['operator', 'seal-migrate', '--to', 'bogus'], { input: '' })).code).toBe(2);
  });
});
