// (p1)-(p3): what users run. PostgreSQL with durability on (fsync, synchronous_commit and
// full_page_writes at their defaults: every commit waits for its WAL flush) and a machine token
// from an AppRole login whose policy is evaluated on every request — a read/list policy for the
// reads, a write policy for the writes. The bulk read fetches a folder of 100 secrets of ~500 B;
// it is measured next to the single read at 1 connection and at the run's connection count, so
// the bulk/single ratio comes from one run. Set-up goes through the public API only.
import { randomBytes } from 'node:crypto';
import { BenchError, info } from '../common.mjs';
import { measure } from '../load.mjs';
import { READ_PATH, WRITE_PATH, scenario } from '../options.mjs';
import { api, startCoffer, startPostgres } from '../servers.mjs';
import { session, stopChild, stopPostgres } from '../session.mjs';
import { measureWrites } from './http.mjs';
import { pairWindows } from '../pairs.mjs';

const OK = [200, 201, 204];

export const BULK_NAMESPACE = 'bench';
export const BULK_FOLDER = 'app/';
export const BULK_SECRETS = 100;
export const VALUE_BYTES = 500;

/** A ~500-byte value (base64 text of random bytes). */
export const value500 = () => randomBytes((VALUE_BYTES * 3) / 4).toString('base64');

/** `count` PUTs through the API, `concurrency` at a time. */
export async function putMany(base, token, paths, makeBody, concurrency = 8) {
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const p = paths[next++];
      await api(base, 'PUT', p, { token, body: makeBody(p) });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker));
}

/**
 * An AppRole `role` with `policy` (created with `rules`), logged in once: its token. The token
 * lives an hour, longer than any run.
 */
export async function machineToken(server, role, rules) {
  const { base, token } = server;
  await api(base, 'PUT', `/v1/sys/policies/${role}`, { token, body: { rules }, expect: OK });
  await api(base, 'PUT', `/v1/auth/approle/roles/${role}`, { token, body: { policies: [role], token_ttl: 3600, token_max_ttl: 3600 }, expect: OK });
  const { role_id } = await api(base, 'GET', `/v1/auth/approle/roles/${role}/role-id`, { token });
  const { secret_id } = await api(base, 'POST', `/v1/auth/approle/roles/${role}/secret-id`, { token, body: {}, expect: OK });
  const login = await api(base, 'POST', '/v1/auth/approle/login', { body: { role_id, secret_id } });
  return login.auth.client_token;
}

/** Read/list on the bench folders, plus unrelated rules and a deny the requests do not hit, as a real policy has. */
export const readRules = (namespace) => [
  { namespace: 'payments-*', path: '*', capabilities: ['read', 'list'] },
  { namespace, path: 'db/*', capabilities: ['read', 'list'] },
  { namespace, path: 'app/*', capabilities: ['read', 'list'] },
  { namespace, path: 'zz-late/*', capabilities: ['read', 'list'] },
  { namespace, path: 'admin/*', capabilities: ['read', 'list'], effect: 'deny' },
];
export const writeRules = (namespace) => [
  { namespace: 'payments-*', path: '*', capabilities: ['read', 'list'] },
  { namespace, path: 'db/*', capabilities: ['read', 'list', 'create', 'update'] },
  { namespace, path: 'zz-write/*', capabilities: ['read', 'list', 'create', 'update'] },
  { namespace, path: 'admin/*', capabilities: ['create', 'update'], effect: 'deny' },
];

export const getRequest = (server, urlPath, token) => ({ url: server.base + urlPath, method: 'GET', headers: { authorization: `Bearer ${token}` } });

/** Fails unless the bulk read as `token` returns exactly `expected` secrets. */
export async function checkBulk(server, urlPath, token, expected) {
  const page = await api(server.base, 'GET', urlPath, { token });
  if (page?.secrets?.length !== expected) {
    throw new BenchError(`bulk read ${urlPath} returned ${page?.secrets?.length} secrets, expected ${expected}`);
  }
}

/**
 * Runs the wanted durable scenarios (p1, p2, p1s, p2s, p3) on their own durable cluster; stores
 * their stats in `results`. `measureA` measures a window of (a) hello-world, whose server is up,
 * for the figure (p1)/(a). Returns the PostgreSQL version.
 */
export async function runDurable(opts, wanted, results, measureA = null) {
  const pg = await startPostgres({ durable: true });
  info(`PostgreSQL ${pg.version} ready, durable (fsync, synchronous_commit, full_page_writes on)`);
  try {
    const server = await startCoffer('postgres-durable', { COFFER_DATABASE_URL: pg.url, COFFER_LOGIN_RATE_PER_SECOND: '0' }, opts);
    try {
      const bulkPath = `/v1/bulk/${BULK_NAMESPACE}/${BULK_FOLDER}`;
      if (['p2', 'p2s'].some(wanted)) {
        const paths = Array.from({ length: BULK_SECRETS }, (_, i) => `/v1/secrets/${BULK_NAMESPACE}/${BULK_FOLDER}s${String(i).padStart(3, '0')}`);
        await putMany(server.base, server.token, paths, () => ({ data: { value: value500() } }));
      }
      const readToken = await machineToken(server, 'bench-machine-read', readRules(BULK_NAMESPACE));
      const read = getRequest(server, READ_PATH, readToken);
      const bulk = getRequest(server, bulkPath, readToken);
      if (['p2', 'p2s'].some(wanted)) await checkBulk(server, bulkPath, readToken, BULK_SECRETS);
      const one = { ...opts, connections: 1 };
      if (wanted('p1s')) results.set('p1s', await measure(scenario('p1s'), server, read, one));
      if (wanted('p2s')) results.set('p2s', await measure(scenario('p2s'), server, bulk, one));
      // (p1)/(a) and (p3)/(p1) in windows p1 a a p1 p3 p3 p1 (../pairs.mjs); (p2) next to the last (p1).
      const p1 = { id: 'p1', measure: (o) => measure(scenario('p1'), server, read, o), window: null };
      if (wanted('p1')) {
        p1.window = await p1.measure(opts);
        results.set('p1', p1.window);
        if (measureA) p1.window = await pairWindows(results, { lead: p1, inner: { id: 'a', measure: measureA }, y: 'p1', opts });
      }
      if (wanted('p3')) {
        const writeToken = await machineToken(server, 'bench-machine-write', writeRules(BULK_NAMESPACE));
        // Each write window on its own secret: the check after it counts that window's writes.
        let n = 0;
        const p3 = { id: 'p3', measure: (o) => measureWrites(scenario('p3'), server, o, { token: writeToken, path: n++ === 0 ? WRITE_PATH : `${WRITE_PATH}-${n}` }) };
        if (p1.window) p1.window = await pairWindows(results, { lead: p1, inner: p3, y: 'p3', opts });
        else results.set('p3', await p3.measure(opts));
      }
      if (wanted('p2')) results.set('p2', await measure(scenario('p2'), server, bulk, opts));
    } finally {
      await stopChild(server.child);
    }
  } finally {
    const c = session.cluster;
    session.cluster = null;
    if (c) await stopPostgres(c);
  }
  return pg.version;
}
