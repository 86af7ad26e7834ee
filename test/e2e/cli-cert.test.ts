// End to end: `coffer login cert` (mutual TLS) and COFFER_CACERT, the built CLI against a real
// `coffer-server --dev` serving HTTPS with a client CA. Certificates are real (openssl).

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CertDir, type CertFiles } from '../helpers/tls.js';
import { runCli, startDevServer, type CliResult, type DevServer } from '../helpers/process.js';

let certs: CertDir;
let serverCert: CertFiles;
let runner: CertFiles;
let stranger: CertFiles;
let server: DevServer | undefined;
let address: string;
let rootToken: string;
let home: string;

type Env = Record<string, string | undefined>;
const coffer = (args: string[], env: Env = {}, input?: string): Promise<CliResult> =>
  runCli(args, { input, env: { HOME: home, COFFER_ADDR: address, COFFER_CACERT: serverCert.certFile, ...env } });
const asRoot = { COFFER_TOKEN: '' } as Env;

beforeAll(async () => {
  certs = new CertDir();
  serverCert = certs.server('server');
  const clientCa = certs.ca('client-ca');
  runner = certs.client('runner', '/CN=ci-runner-7/O=Acme Build', clientCa);
  stranger = certs.client('stranger', '/CN=ci-runner-7/O=Acme Build', certs.ca('other-ca'));
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-cert-'));

  server = await startDevServer({
    COFFER_TLS_CERT_FILE: serverCert.certFile,
    COFFER_TLS_KEY_FILE: serverCert.keyFile,
    COFFER_TLS_CLIENT_CA_FILE: clientCa.certFile,
  });
  address = server.address;
  rootToken = server.rootToken;
  asRoot.COFFER_TOKEN = rootToken;

  const must = async (r: Promise<CliResult>) => {
    const res = await r;
    if (res.code !== 0) throw new Error(`setup failed: ${res.stderr}`);
  };
  await must(coffer(['ns', 'create', 'payments'], asRoot));
  await must(coffer(['-n', 'payments', 'secret', 'put', 'db', 'password=tls-pw-1'], asRoot));
  await must(coffer(['policy', 'write', 'payments-read', '-'], asRoot, JSON.stringify({ rules: [{ namespace: 'payments', path: '*', capabilities: ['read', 'list'] }] })));
  await must(coffer(['cert', 'role', 'write', 'runners', '-'], asRoot, JSON.stringify({ allowed_common_names: ['ci-runner-*'], policies: ['payments-read'] })));
  await must(coffer(['cert', 'role', 'write', 'api-only', '-'], asRoot, JSON.stringify({ allowed_common_names: ['payments-api'], policies: ['payments-read'] })));
}, 90_000);

afterAll(async () => {
  await server?.stop();
  certs?.cleanup();
  if (home) await rm(home, { recursive: true, force: true });
});

it('COFFER_CACERT: the CLI trusts a private CA only when told to', async () => {
  expect((await coffer(['status'], { COFFER_CACERT: undefined })).code).toBe(5);
  expect((await coffer(['status'])).code).toBe(0);
});

it('a runner logs in with its certificate; the token works for what its role allows', async () => {
  const login = await coffer(['login', 'cert', '--role', 'runners', '--format', 'json'], { COFFER_CLIENT_CERT: runner.certFile, COFFER_CLIENT_KEY: runner.keyFile });
  expect(login.stderr).toBe('');
  expect(login.code).toBe(0);
  expect(JSON.parse(login.stdout)).toMatchObject({ identity: 'cert:runners:ci-runner-7', policies: ['payments-read'] });
  const run = await coffer(['-n', 'payments', 'run', '--', 'node', '-e', 'process.stdout.write(process.env.DB)']);
  expect(run.stdout).toBe('tls-pw-1');
});

it('refused: no certificate (2), another CA (3), a role that does not allow the certificate (3)', async () => {
  const h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-cert-refused-'));
  try {
    const env = { HOME: h };
    expect((await coffer(['login', 'cert', '--role', 'runners'], env)).code).toBe(2);
    const otherCa = await coffer(['login', 'cert', '--role', 'runners', '--cert', stranger.certFile, '--key', stranger.keyFile], env);
    expect(otherCa.code).toBe(3);
    const notAllowed = await coffer(['login', 'cert', '--role', 'api-only', '--cert', runner.certFile, '--key', runner.keyFile], env);
    expect(notAllowed.code).toBe(3);
    expect(notAllowed.stderr).toContain('permission_denied');
    expect(existsSync(path.join(h, '.config', 'coffer', 'token'))).toBe(false);
  } finally {
    await rm(h, { recursive: true, force: true });
  }
});
