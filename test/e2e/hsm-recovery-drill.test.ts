// Recovery drill (c), a lost HSM (issue 15, README "Key recovery plan"): a PKCS#11-sealed server
// whose root key the operators imported with BYOK and kept; a backup. Then the HSM's token
// directory is deleted and the database with it. Restoring onto a new token alone is refused; with
// `coffer-server hsm-restore-root` putting the kept key into it under the label the backup names,
// a new server restores the backup, unseals itself and serves every secret version, and its audit
// chain verifies. Real server processes, SoftHSM2, the CLI.
import { constants, createCipheriv, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { initSoftHsmToken, writeSoftHsmConf } from '#lib/softhsm.mjs';
import { describeIfSoftHsm, softHsmModule, softHsmUtil } from '../helpers/env.js';
import { runCli, runServerCommand, startServerProcess, type CliResult, type ServerProcess } from '../helpers/process.js';
import { api } from '../helpers/server.js';

const running: ServerProcess[] = [];
const cleanups: Array<() => void> = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
  for (const c of cleanups) c();
});

describeIfSoftHsm('recovery drill: the HSM is lost (PKCS#11 seal, root key imported and kept by the operators)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-hsm-drill-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const conf = path.join(dir, 'softhsm2.conf');
  const tokens = path.join(dir, 'tokens');
  const pinFile = path.join(dir, 'pin');
  const backupFile = path.join(dir, 'coffer.backup');
  const rootKeyFile = path.join(dir, 'root.key');
  const LABEL = 'drill';
  const env = (data: string): Record<string, string> => ({
    SOFTHSM2_CONF: conf,
    COFFER_SEAL: 'pkcs11',
    COFFER_PKCS11_MODULE: softHsmModule()!,
    COFFER_PKCS11_TOKEN_LABEL: LABEL,
    COFFER_PKCS11_PIN_FILE: pinFile,
    COFFER_DATA_DIR: path.join(dir, data),
  });
  /** A new, empty HSM: a token directory of its own with one token. */
  const newHsm = () => {
    mkdirSync(tokens, { recursive: true });
    writeSoftHsmConf(conf, tokens);
    initSoftHsmToken({ util: softHsmUtil(), conf, label: LABEL, soPin: '13579', pin: '246810' });
  };
  let server: ServerProcess;
  let token = '';
  const start = async (data: string) => {
    server = await startServerProcess(env(data));
    running.push(server);
    return server;
  };
  const cli = (args: string[]): Promise<CliResult> => runCli(args, { env: { HOME: dir, COFFER_ADDR: server.url, ...(token ? { COFFER_TOKEN: token } : {}) } });
  const ok = async (args: string[]) => {
    const r = await cli(args);
    if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const call = (method: string, p: string, body?: unknown) => api(server.url, method, p, { token, ...(body === undefined ? {} : { body }) });

  beforeAll(async () => {
    writeFileSync(pinFile, '246810\n', { mode: 0o600 });
    newHsm();
    await start('data-a');
    const init = await api(server.url, 'POST', '/v1/sys/init', { body: { recovery_shares: 3, recovery_threshold: 2 } });
    expect(init.status).toBe(200);
    token = init.body.root_token as string;
    expect((await call('POST', '/v1/namespaces', { name: 'ops' })).status).toBe(201);
    expect((await call('PUT', '/v1/secrets/ops/db', { data: { password: 'before-import' } })).status).toBe(200);
  }, 180_000);

  it('a root key the operators imported and kept brings everything back on a new token', async () => {
    // The operators make the root key themselves and keep it (in the drill, a file; in life, split
    // or in a safe), and import it into the HSM: the BYOK root import, wrapped for the HSM.
    const rootKey = randomBytes(32);
    writeFileSync(rootKeyFile, rootKey, { mode: 0o600 });
    const params = await call('GET', '/v1/byok/root/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_1');
    expect(params.status).toBe(200);
    const ephemeral = randomBytes(32);
    const kwp = createCipheriv('id-aes256-wrap-pad', ephemeral, Buffer.from('A65959A6', 'hex'));
    const wrapped = Buffer.concat([
      publicEncrypt({ key: params.body.public_key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ephemeral),
      kwp.update(rootKey),
      kwp.final(),
    ]);
    const imported = await call('POST', '/v1/byok/root/import', { import_token: params.body.import_token, encrypted_key_material: wrapped.toString('base64') });
    expect(imported.status).toBe(200);
    expect((await call('PUT', '/v1/secrets/ops/db', { data: { password: 'after-import' } })).status).toBe(200);
    await ok(['operator', 'backup', '--out', backupFile]);
    const header = JSON.parse((await readFile(backupFile, 'utf8')).split('\n')[0]!).coffer_backup;
    expect(header.seal).toMatchObject({ type: 'pkcs11', root_version: imported.body.root_version });
    const label = header.seal.hsm_key_label as string;
    expect(label).toBeTruthy();

    // The HSM and the database are lost.
    await server.stop('SIGKILL');
    rmSync(tokens, { recursive: true, force: true });
    rmSync(path.join(dir, 'data-a'), { recursive: true, force: true });

    // A new HSM alone brings nothing back: restore refuses, checked before anything is written.
    newHsm();
    await start('data-b');
    const alone = await cli(['operator', 'restore', backupFile]);
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toMatch(/does not hold the backup's root key.*seal_mismatch/s);
    await server.stop('SIGTERM');

    // The kept key into the new token under the backup's label; a wrong key would not do.
    const wrong = path.join(dir, 'wrong.key');
    writeFileSync(wrong, randomBytes(31), { mode: 0o600 });
    const refused = runServerCommand(['hsm-restore-root', '--label', label, '--key-file', wrong], env('data-b'));
    expect(await refused.exited).not.toBe(0);
    expect(refused.output()).toMatch(/32 bytes/);
    const restored = runServerCommand(['hsm-restore-root', '--label', label, '--key-file', rootKeyFile], env('data-b'));
    expect(await restored.exited).toBe(0);
    expect(restored.output()).toContain(`root key "${label}" is on the token`);
    expect(restored.output()).not.toContain(rootKey.toString('hex'));
    const twice = runServerCommand(['hsm-restore-root', '--label', label, '--key-file', rootKeyFile], env('data-b'));
    expect(await twice.exited).not.toBe(0);
    expect(twice.output()).toMatch(/already holds a key/);

    await start('data-b');
    // The key on the token proves the backup (its sealed digest opens) and unseals the server.
    expect(JSON.parse(await ok(['operator', 'restore', backupFile, '--format', 'json']))).toMatchObject({ sealed: false, seal_type: 'pkcs11' });
    // And a restart unseals by itself, as every PKCS#11 server does.
    await server.stop('SIGTERM');
    await start('data-b');
    expect((await api(server.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ sealed: false, seal_type: 'pkcs11' });
    // Every version, under the original root token (restored with the backup), and the audit chain.
    expect(await ok(['-n', 'ops', 'secret', 'get', 'db', '--field', 'password'])).toBe('after-import');
    expect(await ok(['-n', 'ops', 'secret', 'get', 'db', '--version', '1', '--field', 'password'])).toBe('before-import');
    expect((await cli(['audit', 'verify'])).code).toBe(0);
  }, 600_000);
});
