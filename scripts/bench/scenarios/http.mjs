// The HTTP scenarios on a running Coffer: a read of one secret (b0-b3, h1), and a write of a
// new version per request (c1, c2; c3 spread over 100 secrets) followed by a check that no write was lost.
import { randomBytes } from 'node:crypto';
import { sleep } from '../common.mjs';
import { measure } from '../load.mjs';
import { READ_PATH, SPREAD_SECRETS, WRITE_MAX_VERSIONS, WRITE_PATH } from '../options.mjs';
import { api } from '../servers.mjs';

export function readRequest(server) {
  return { url: server.base + READ_PATH, method: 'GET', headers: { authorization: `Bearer ${server.token}` } };
}

export function writeRequest(server, { token = server.token, path = WRITE_PATH } = {}) {
  return {
    url: server.base + path,
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ data: { password: randomBytes(24).toString('base64url') }, max_versions: WRITE_MAX_VERSIONS }),
  };
}

/**
 * The write scenario (as `token`, root by default, to `path`), then a consistency check (as
 * root): every PUT that got a 2xx made a version, so
 * current_version must be at least that count (more is fine: autocannon drops requests that
 * are still in flight when it stops, and the server may yet commit them), and retention must
 * have kept at most max_versions versions.
 */
/**
 * Writes the server may commit without their client hearing: each load run (warm-up rounds and
 * the measured run) stops with up to one request in flight per connection.
 */
const unacknowledgedAtMost = (stats, opts) => (stats.loadRuns ?? 2) * opts.connections;

export async function measureWrites(scenario, server, opts, target = {}) {
  let ok = 0;
  const request = writeRequest(server, target);
  const stats = await measure(scenario, server, request, opts, (status) => {
    if (status >= 200 && status < 300) ok++;
  });
  await sleep(200); // let writes whose client went away finish
  const history = await api(server.base, 'GET', `${target.path ?? WRITE_PATH}:versions`, { token: server.token });
  stats.writeCheck = {
    acknowledged: ok,
    currentVersion: history.current_version,
    versionsKept: history.versions.length,
    maxVersions: history.max_versions,
  };
  const problems = [];
  if (history.current_version < ok) problems.push(`lost writes: ${ok} PUTs acknowledged but current_version is ${history.current_version}`);
  if (history.versions.length > WRITE_MAX_VERSIONS) {
    problems.push(`retention: ${history.versions.length} versions kept, max_versions is ${WRITE_MAX_VERSIONS}`);
  }
  if (history.current_version > ok + unacknowledgedAtMost(stats, opts)) {
    problems.push(`${history.current_version - ok} more versions than acknowledged PUTs (expected at most ${unacknowledgedAtMost(stats, opts)} unacknowledged)`);
  }
  stats.problems = problems;
  return stats;
}


/**
 * (c3): the write scenario over SPREAD_SECRETS secrets, a random one per request (CI jobs writing
 * their own secrets: writers rarely wait on one row), with the same check summed over them.
 */
export async function measureSpreadWrites(scenario, server, opts) {
  const paths = Array.from({ length: SPREAD_SECRETS }, (_, i) => `/v1/secrets/bench/spread/s${String(i).padStart(3, '0')}`);
  const one = writeRequest(server, { path: paths[0] });
  const request = { ...one, requests: [{ setupRequest: (req) => ({ ...req, path: paths[Math.floor(Math.random() * paths.length)] }) }] };
  let ok = 0;
  const stats = await measure(scenario, server, request, opts, (status) => {
    if (status >= 200 && status < 300) ok++;
  });
  await sleep(200); // let writes whose client went away finish
  let versions = 0;
  let keptMost = 0;
  for (const path of paths) {
    const history = await api(server.base, 'GET', `${path}:versions`, { token: server.token, expect: [200, 404] });
    if (history?.current_version === undefined) continue; // never written
    versions += history.current_version;
    keptMost = Math.max(keptMost, history.versions.length);
  }
  stats.writeCheck = { acknowledged: ok, currentVersion: versions, versionsKept: keptMost, maxVersions: WRITE_MAX_VERSIONS };
  const problems = [];
  if (versions < ok) problems.push(`lost writes: ${ok} PUTs acknowledged but the current versions add up to ${versions}`);
  if (keptMost > WRITE_MAX_VERSIONS) problems.push(`retention: ${keptMost} versions kept, max_versions is ${WRITE_MAX_VERSIONS}`);
  if (versions > ok + unacknowledgedAtMost(stats, opts)) {
    problems.push(`${versions - ok} more versions than acknowledged PUTs (expected at most ${unacknowledgedAtMost(stats, opts)} unacknowledged)`);
  }
  stats.problems = problems;
  return stats;
}
