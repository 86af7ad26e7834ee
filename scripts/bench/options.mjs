// The scenario catalogue and the command line of `npm run bench` (see scripts/bench.mjs).
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_SERVER_MAIN, UsageError, out } from './common.mjs';

export const AIM_TEXT = '(b) on PostgreSQL ≥ 0.5 × (a), p99 ≤ 20 ms at 32 connections';
export const AIM = { ratio: 0.5, p99Ms: 20, connections: 32 };

export const SCENARIOS = [
  { id: 'a', label: '(a)  express hello-world', backend: 'hello', kind: 'hello' },
  { id: 'b1', label: '(b1) read secret, PostgreSQL', backend: 'postgres', kind: 'read' },
  { id: 'b2', label: '(b2) read secret, PGlite', backend: 'pglite', kind: 'read' },
  { id: 'c1', label: '(c1) write secret, PostgreSQL', backend: 'postgres', kind: 'write' },
  { id: 'c2', label: '(c2) write secret, PGlite', backend: 'pglite', kind: 'write' },
  // The audit log's cost: (b1) again with auditing off (issue: at most 25% of read throughput).
  { id: 'b0', label: '(b0) read, PostgreSQL, no audit', backend: 'postgres', kind: 'read' },
  // Identity (issue 4): a read with a policy-checked user token (aim: within 15% of root's (b1)),
  // and logins per method (on the (b1) server, login rate limit off).
  { id: 'b3', label: '(b3) read, PostgreSQL, user token + policy', backend: 'postgres', kind: 'read' },
  { id: 'l1', label: '(l1) login userpass (argon2id)', backend: 'postgres', kind: 'login' },
  { id: 'l2', label: '(l2) login AppRole', backend: 'postgres', kind: 'login' },
  { id: 'l3', label: '(l3) login JWT (RS256, cached JWKS)', backend: 'postgres', kind: 'login' },
  // The PKCS#11 seal (SoftHSM2): reads never touch the HSM with a warm KEK cache (aim: within 10% of b1).
  { id: 'h1', label: '(h1) read, PostgreSQL, PKCS#11 seal', backend: 'postgres', kind: 'read' },
  // KMS encrypt 1 KiB on the (h1) server: a software aes256-gcm key and an HSM-resident one (issue 14).
  { id: 'h2', label: '(h2) KMS encrypt 1 KiB, software key, PKCS#11 seal', backend: 'postgres', kind: 'kms' },
  { id: 'h3', label: '(h3) KMS encrypt 1 KiB, HSM-resident key (SoftHSM2)', backend: 'postgres', kind: 'kms' },
  // What users run (issue 13): PostgreSQL with durability on, AppRole machine tokens whose policy
  // is checked per request; a bulk read of a 100-secret folder next to the single read, at 1
  // connection and at the run's count (scenarios/durable.mjs).
  { id: 'p1s', label: '(p1) read, durable PG, AppRole, 1 connection', backend: 'postgres-durable', kind: 'read' },
  { id: 'p2s', label: '(p2) bulk read 100 × 500 B, durable PG, AppRole, 1 connection', backend: 'postgres-durable', kind: 'read' },
  { id: 'p1', label: '(p1) read, durable PG, AppRole read/list policy', backend: 'postgres-durable', kind: 'read' },
  { id: 'p2', label: '(p2) bulk read 100 × 500 B, durable PG, AppRole', backend: 'postgres-durable', kind: 'read' },
  { id: 'p3', label: '(p3) write, durable PG, AppRole write policy', backend: 'postgres-durable', kind: 'write' },
  // The KMS (issue 14), on the (b1) server: compared with its read in the same run (scenarios/kms.mjs).
  { id: 'k1', label: '(k1) KMS encrypt 1 KiB, PostgreSQL', backend: 'postgres', kind: 'kms' },
  { id: 'k2', label: '(k2) KMS datakey 256-bit, PostgreSQL', backend: 'postgres', kind: 'kms' },
  { id: 'k3', label: '(k3) KMS sign ed25519, PostgreSQL', backend: 'postgres', kind: 'kms' },
  { id: 'k4', label: '(k4) KMS batch of 1,000 encrypts, PostgreSQL', backend: 'postgres', kind: 'kms' },
  // (c1) spread over 100 secrets, a random one per request: what CI jobs writing their own secrets do.
  { id: 'c3', label: '(c3) write 100 secrets, PostgreSQL', backend: 'postgres', kind: 'write' },
];
export const DURABLE_IDS = ['p1s', 'p2s', 'p1', 'p2', 'p3'];
/**
 * Left out of --quick unless named in --only: the 1-connection runs, the slowest for what they add
 * to a smoke test, and the KMS scenarios (the HTTP and crypto paths they exercise are tested).
 */
export const NOT_IN_QUICK = ['p1s', 'p2s', 'k1', 'k2', 'k3', 'k4', 'h2', 'h3'];
export const scenario = (id) => SCENARIOS.find((s) => s.id === id);

/** CLI and SDK scenarios (d1, d2): timed per run, reported in their own table. */
export const CLI_SCENARIOS = ['d1', 'd2'];
export const CLI_SECRETS = 50;
export const CLI_AIM_MS = 300;

/** Rewrap scenarios: not HTTP load, so reported in their own table. */
export const REWRAP_SCENARIOS = [
  { id: 'r1', label: '(r1) KEK rewrap, PostgreSQL', backend: 'postgres' },
  { id: 'r2', label: '(r2) KEK rewrap, PGlite', backend: 'pglite' },
];
export const REWRAP_AIM = 20_000;

/**
 * Not HTTP scenarios of the main table: the AEAD micro-benchmark (in every run; alone with
 * --aead) and the scale scenario (only with --scale: it seeds a million secrets).
 */
export const EXTRA_SCENARIOS = ['aead', 'scale'];
export const OPT_IN = ['scale'];
export const SCALE_DEFAULT = 1_000_000;
/** The scale scenario's concurrency per server (two run at once): moderate, so that it measures latency, not a saturated machine's queue. */
export const SCALE_CONNECTIONS = 2;

export const READ_PATH = '/v1/secrets/bench/db/password';
export const WRITE_PATH = '/v1/secrets/bench/db/rotating';
export const WRITE_MAX_VERSIONS = 5;
/** (c3): how many secrets its writes are spread over. */
export const SPREAD_SECRETS = 100;

export const USAGE = `usage: node scripts/bench.mjs [--quick] [--duration S] [--connections N] [--warmup S] [--warmup-requests N]
                           [--json FILE] [--only a,b1,b2,c1,c2,c3,b0,b3,l1,l2,l3,h1,h2,h3,p1s,p2s,p1,p2,p3,k1,k2,k3,k4,r1,r2,d1,d2,aead,scale]
                           [--rewrap-secrets N] [--aead] [--scale] [--scale-secrets N] [--scale-connections N]
                           [--rounds N] [--cpu-prof DIR] [--server FILE]`;

export function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      connections: { type: 'string' },
      warmup: { type: 'string' },
      'warmup-requests': { type: 'string' },
      json: { type: 'string' },
      only: { type: 'string' },
      'cpu-prof': { type: 'string' },
      server: { type: 'string' },
      'rewrap-secrets': { type: 'string' },
      aead: { type: 'boolean', default: false },
      scale: { type: 'boolean', default: false },
      'scale-secrets': { type: 'string' },
      'scale-connections': { type: 'string' },
      rounds: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out(USAGE);
    process.exit(0);
  }
  const num = (name, raw, fallback, { integer = false, min = 0 } = {}) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= min || (integer && !Number.isInteger(n))) {
      const what = min > 0 ? `${integer ? 'an integer' : 'a number'} above ${min}` : `a ${integer ? 'positive integer' : 'positive number'}`;
      throw new UsageError(`--${name} must be ${what}, got "${raw}"`);
    }
    return n;
  };
  const quick = values.quick;
  let only = values.only ? values.only.split(',').map((s) => s.trim()).filter(Boolean) : null;
  const known = [...SCENARIOS, ...REWRAP_SCENARIOS].map((s) => s.id).concat(CLI_SCENARIOS, EXTRA_SCENARIOS);
  for (const id of only ?? []) {
    if (!known.includes(id)) throw new UsageError(`--only: unknown scenario "${id}" (${known.join(', ')})`);
  }
  // --aead and --scale are modes of their own: alone they run just that; with --only, in addition.
  const modes = [...(values.aead ? ['aead'] : []), ...(values.scale ? ['scale'] : [])];
  if (modes.length > 0) only = [...new Set([...(only ?? []), ...modes])];
  const scaleRaw = values['scale-secrets'] ?? process.env.COFFER_BENCH_SCALE_SECRETS;
  return {
    quick,
    duration: num('duration', values.duration, quick ? 2 : 10),
    connections: num('connections', values.connections, quick ? 8 : 32, { integer: true }),
    warmup: num('warmup', values.warmup, 1),
    // 0 turns the request count off (the CI smoke keeps its short warm-up).
    warmupRequests: values['warmup-requests'] === '0' ? 0 : num('warmup-requests', values['warmup-requests'], quick ? 5_000 : 10_000, { integer: true }),
    rewrapSecrets: num('rewrap-secrets', values['rewrap-secrets'], quick ? 10_000 : 100_000, { integer: true }),
    scaleSecrets: num('scale-secrets', scaleRaw, SCALE_DEFAULT, { integer: true, min: 1000 }),
    scaleConnections: num('scale-connections', values['scale-connections'], SCALE_CONNECTIONS, { integer: true }),
    // The HTTP scenarios N times, each round on fresh servers; the report gives the median round.
    rounds: num('rounds', values.rounds, 1, { integer: true }),
    json: values.json ? path.resolve(values.json) : null,
    only,
    cpuProfDir: values['cpu-prof'] ? path.resolve(values['cpu-prof']) : null,
    serverMain: values.server ? path.resolve(values.server) : DEFAULT_SERVER_MAIN,
  };
}
