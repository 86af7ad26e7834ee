// End to end over real TLS: an application presents its client certificate, gets a token, asks
// the KMS for a data key and encrypts a file locally (`coffer login cert`, then
// `coffer kms encrypt-file`). Its policy has `datakey` only: it cannot decrypt what it wrote; a
// second identity with `decrypt` can. Certificates are real (openssl); the server is a
// `coffer-server --dev` process serving HTTPS with a client CA.

import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CertDir, type CertFiles } from '../helpers/tls.js';
import { runCli, startDevServer, type CliResult, type DevServer } from '../helpers/process.js';

let certs: CertDir;
let serverCert: CertFiles;
let app: CertFiles;
let server: DevServer | undefined;
let address: string;
let rootToken: string;
let appHome: string;
let dir: string;

type Env = Record<string, string | undefined>;
const coffer = (args: string[], env: Env, input?: string): Promise<CliResult> =>
  runCli(args, { input, env: { COFFER_ADDR: address, COFFER_CACERT: serverCert.certFile, ...env } });
const asRoot = (): Env => ({ HOME: dir, COFFER_TOKEN: rootToken });
const asApp = (): Env => ({ HOME: appHome });

async function must(r: Promise<CliResult>): Promise<string> {
  const res = await r;
  if (res.code !== 0) throw new Error(`coffer exited ${res.code}: ${res.stderr}`);
  return res.stdout;
}

beforeAll(async () => {
  certs = new CertDir();
  serverCert = certs.server('server');
  const clientCa = certs.ca('client-ca');
  app = certs.client('app', '/CN=billing-api/O=Acme', clientCa);
  appHome = await mkdtemp(path.join(os.tmpdir(), 'coffer-kms-mtls-app-'));
  dir = await mkdtemp(path.join(os.tmpdir(), 'coffer-kms-mtls-'));

  server = await startDevServer({
    COFFER_TLS_CERT_FILE: serverCert.certFile,
    COFFER_TLS_KEY_FILE: serverCert.keyFile,
    COFFER_TLS_CLIENT_CA_FILE: clientCa.certFile,
  });
  address = server.address;
  rootToken = server.rootToken;
  expect(address).toMatch(/^https:/);

  await must(coffer(['ns', 'create', 'billing'], asRoot()));
  await must(coffer(['-n', 'billing', 'kms', 'key', 'create', 'invoices', '--type', 'aes256-gcm'], asRoot()));
  await must(coffer(['policy', 'write', 'invoices-seal', '-'], asRoot(), JSON.stringify({ rules: [{ namespace: 'billing', path: 'invoices', capabilities: ['datakey'] }] })));
  await must(coffer(['cert', 'role', 'write', 'billing-api', '-'], asRoot(), JSON.stringify({ allowed_common_names: ['billing-api'], policies: ['invoices-seal'] })));
}, 90_000);

afterAll(async () => {
  await server?.stop();
  certs?.cleanup();
  for (const d of [appHome, dir]) if (d) await rm(d, { recursive: true, force: true });
});

it('an application with a client certificate gets a data key and encrypts locally; it cannot decrypt', async () => {
  const login = await coffer(['login', 'cert', '--role', 'billing-api', '--format', 'json'], { ...asApp(), COFFER_CLIENT_CERT: app.certFile, COFFER_CLIENT_KEY: app.keyFile });
  expect(login.code).toBe(0);
  expect(JSON.parse(login.stdout)).toMatchObject({ identity: 'cert:billing-api:billing-api', policies: ['invoices-seal'] });

  const data = randomBytes(1024 * 1024 + 5);
  const file = path.join(dir, 'invoices.csv');
  await writeFile(file, data);
  await must(coffer(['-n', 'billing', 'kms', 'encrypt-file', 'invoices', '--in', file], asApp()));

  // datakey only: neither the envelope's data key nor a one-off encrypt is within its policy.
  const denied = await coffer(['kms', 'decrypt-file', '--in', `${file}.cfev`, '--out', path.join(dir, 'app.out')], asApp());
  expect(denied.code).toBe(3);
  expect((await coffer(['-n', 'billing', 'kms', 'encrypt', 'invoices'], asApp(), 'x')).code).toBe(3);

  await must(coffer(['kms', 'decrypt-file', '--in', `${file}.cfev`, '--out', path.join(dir, 'root.out')], asRoot()));
  expect((await readFile(path.join(dir, 'root.out'))).equals(data)).toBe(true);
});
