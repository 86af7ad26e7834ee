// The servers under test, each a separate child process on 127.0.0.1 (so autocannon in this
// process never shares their event loop): the express hello-world baseline, Coffer on a
// given storage (initialised and unsealed through its HTTP API), the throwaway PostgreSQL,
// and a SoftHSM2 token for the PKCS#11 seal.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasExited, waitForHttp as pollHttp } from '../lib/child.mjs';
import { freePort } from '../lib/port.mjs';
import { findPostgresBinaries, startPostgresCluster } from '../lib/pg-cluster.mjs';
import { findSoftHsm, initSoftHsmToken, writeSoftHsmConf } from '../lib/softhsm.mjs';
import { BenchError, info, requireFromServer, root } from './common.mjs';
import { READ_PATH } from './options.mjs';
import { session, startChild, trackClusterDir, trackTempDir } from './session.mjs';

const HELLO_MAIN = path.join(root, 'scripts', 'bench', 'hello.mjs');

/**
 * Polls `url` until the server answers at all (any HTTP status); returns that status. Only an
 * answer on a port the child listens on counts: another process may have bound freePort's port.
 */
async function waitForHttp(handle, url, timeoutMs = 60_000) {
  const ready = await pollHttp(url, { timeoutMs, stopIf: () => hasExited(handle.child), owner: handle.child.pid });
  if ('status' in ready) return ready.status;
  if ('ended' in ready) {
    const { code, signal } = await handle.exited;
    throw new BenchError(`${handle.name} exited (code ${code}, signal ${signal}) before it was ready:\n${handle.output() || '(no output)'}`);
  }
  throw new BenchError(`${handle.name} did not answer ${url} within ${timeoutMs / 1000} s:\n${handle.output() || '(no output)'}`);
}

/** One JSON call to a server's API; anything but an `expect`ed status is a BenchError. */
export async function api(base, method, urlPath, { token, body, expect = [200] } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (!expect.includes(res.status)) throw new BenchError(`${method} ${urlPath} -> HTTP ${res.status}: ${text.slice(0, 500)}`);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export async function startHello() {
  const port = await freePort();
  const child = startChild('hello server', [HELLO_MAIN, String(port)], { ...process.env });
  const base = `http://127.0.0.1:${port}`;
  const status = await waitForHttp(child, `${base}/hello`);
  if (status !== 200) throw new BenchError(`hello server answered ${status} on /hello`);
  return { child, base };
}

/** Environment for a Coffer child: ours minus any COFFER_* the caller may have set, plus `extra`. */
function cofferEnv(extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('COFFER_')));
  return { ...env, COFFER_HOST: '127.0.0.1', COFFER_LOG_LEVEL: 'warn', ...extra };
}

/**
 * Starts Coffer on the given storage, initialises (1 share) and unseals it, creates namespace
 * `bench` and the secret the read scenario fetches, and checks that it reads back.
 */
export async function startCoffer(name, storageEnv, opts) {
  const port = await freePort();
  // Node flags go before the main file (e.g. heap sizing under test by ab.mjs).
  const nodeArgs = [...(opts.nodeArgs ?? [])];
  if (opts.cpuProfDir) {
    mkdirSync(opts.cpuProfDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, `--cpu-prof-name=coffer-${name}-${Date.now()}.cpuprofile`);
  }
  const child = startChild(`coffer (${name})`, [...nodeArgs, opts.serverMain], cofferEnv({ COFFER_PORT: String(port), ...storageEnv }));
  const base = `http://127.0.0.1:${port}`;
  const health = await waitForHttp(child, `${base}/v1/sys/health`);
  if (health !== 501) throw new BenchError(`coffer (${name}): expected a fresh, uninitialised server (health 501), got ${health}`);

  const init = await api(base, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } });
  // The PKCS#11 seal unseals itself at init (recovery shares instead of unseal shares).
  const unsealed = init.shares ? await api(base, 'POST', '/v1/sys/unseal', { body: { share: init.shares[0] } }) : await api(base, 'GET', '/v1/sys/seal-status');
  if (unsealed.sealed !== false) throw new BenchError(`coffer (${name}) is still sealed after unseal: ${JSON.stringify(unsealed)}`);
  const token = init.root_token;
  await api(base, 'POST', '/v1/namespaces', { token, body: { name: 'bench' }, expect: [200, 201] });
  const value = randomBytes(24).toString('base64url');
  await api(base, 'PUT', READ_PATH, { token, body: { data: { password: value } } });
  const back = await api(base, 'GET', READ_PATH, { token });
  if (back?.data?.password !== value) throw new BenchError(`coffer (${name}): the secret did not read back: ${JSON.stringify(back).slice(0, 300)}`);
  return { child, base, token, share: init.shares?.[0] };
}

/**
 * A throwaway SoftHSM2 token for scenario h1: its own token directory under a temp
 * SOFTHSM2_CONF, so nothing touches the machine's tokens. Null when SoftHSM2 is absent.
 */
export function softHsmToken() {
  const hsm = findSoftHsm();
  if (!hsm.module) return null;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-softhsm-'));
  trackTempDir(dir);
  const conf = writeSoftHsmConf(path.join(dir, 'softhsm2.conf'), path.join(dir, 'tokens'));
  const pinFile = path.join(dir, 'pin');
  writeFileSync(pinFile, '1234\n', { mode: 0o600 });
  try {
    initSoftHsmToken({ util: hsm.util ?? 'softhsm2-util', conf, label: 'coffer-bench', soPin: '5678', pin: '1234' });
  } catch {
    return null;
  }
  return {
    env: {
      SOFTHSM2_CONF: conf,
      COFFER_SEAL: 'pkcs11',
      COFFER_PKCS11_MODULE: hsm.module,
      COFFER_PKCS11_TOKEN_LABEL: 'coffer-bench',
      COFFER_PKCS11_PIN_FILE: pinFile,
    },
  };
}

/**
 * The throwaway cluster with a `coffer_bench` database; null without PostgreSQL binaries.
 * `durable`: fsync, synchronous_commit and full_page_writes on (else off, as in the tests);
 * `settings`: further server settings (name → value), e.g. the scale scenario's memory sizing.
 */
export async function startPostgres({ durable = false, settings = {} } = {}) {
  const binaries = findPostgresBinaries();
  if (!binaries) return null;
  info(`starting a throwaway PostgreSQL cluster (${binaries.binDir}${durable ? ', durable' : ''})`);
  session.cluster = await startPostgresCluster({ onDataDir: trackClusterDir, durable, settings });
  const pg = requireFromServer('pg');
  const admin = new pg.Client({ connectionString: session.cluster.url });
  await admin.connect();
  let version;
  try {
    await admin.query('create database coffer_bench');
    version = (await admin.query('show server_version')).rows[0].server_version;
  } finally {
    await admin.end();
  }
  const url = new URL(session.cluster.url);
  url.pathname = '/coffer_bench';
  return { url: url.toString(), version };
}

/** Another empty database on the running cluster. */
export async function createBenchDatabase(name) {
  const pg = requireFromServer('pg');
  const admin = new pg.Client({ connectionString: session.cluster.url });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(session.cluster.url);
  url.pathname = `/${name}`;
  return url.toString();
}
