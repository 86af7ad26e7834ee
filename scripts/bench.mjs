#!/usr/bin/env node
// Load benchmark behind `npm run bench` (after `tsc -b`).
//
//   npm run bench                      full run: 10 s per scenario, 32 connections
//   npm run bench -- --quick           CI smoke: 2 s per scenario, 8 connections
//   npm run bench -- --duration 20 --connections 64 --json /tmp/bench.json
//
// Scenarios (each server is a separate child process on 127.0.0.1, on a random free port,
// so autocannon in this process never shares the server's event loop):
//   (a)  bare express 5 hello-world JSON server (scripts/bench/hello.mjs): the ceiling
//   (b1) authenticated GET of one secret's latest version, Coffer on PostgreSQL
//   (b2) the same on the embedded PGlite store
//   (c1) PUT of a new version of one secret per request (max_versions 5), PostgreSQL
//   (c2) the same on PGlite
//   (c3) (c1) spread over 100 secrets, a random one per request (writers rarely share a row lock)
//   (b0) (b1) with the audit log off: the audit log's cost, from windows b1 b0 b0 b1 (drift cancels)
//   (b3) (b1) with a user's token whose policy is evaluated on each read: the policy's cost
//   (l1) (l2) (l3) logins per second: userpass (argon2id), AppRole, JWT from a local OIDC issuer
//   (r1) KEK rewrap job: DEKs/s moving 100k secrets (10k with --quick) to a new KEK version,
//        PostgreSQL; (r2) the same on PGlite. Seeded in bulk through the storage layer with the
//        server's own keyring (HTTP would take minutes; scenarios/seed.mjs), then the real job
//        code runs in-process.
//   (d1) CLI: wall time of `coffer run -- true` with 50 secrets in the folder (process start to exit,
//        sequential runs; `node -e 0` is measured alongside as the floor), Coffer on PGlite
//   (d2) SDK: latency of one bulk fetch of those 50 secrets (client.secrets.bulk), sequential
//   (p1) (p2) (p3) what users run: PostgreSQL with durability ON (fsync, synchronous_commit) and
//        AppRole machine tokens with a read/list (write) policy: a read, a bulk read of a folder of
//        100 secrets of ~500 B, and writes; (p1)/(p2) also at 1 connection (not in --quick), so
//        the bulk/single ratio comes from one run (scenarios/durable.mjs)
//   (k1)-(k4) KMS (issue 14) on the (b1) server: encrypt 1 KiB, a data key, an Ed25519 signature,
//        a batch of 1,000 encrypts per request; reported as ratios to (b1) of the same run (not in --quick)
//   (h2)/(h3) on the (h1) server: KMS encrypt 1 KiB with a software key and with an HSM-resident key
//        (generated in SoftHSM2, GCM in the token); (h3) reported against (h2) (not in --quick)
//   aead AEAD micro-benchmark: seal+open of 500 B (and 32 B) values, the server's native path vs
//        pure-JS @noble/ciphers, in this process (bench/aead.mjs); alone with --aead
//   scale  only with --scale: N secrets (--scale-secrets, COFFER_BENCH_SCALE_SECRETS; default
//        1,000,000) across 100 namespaces on durable, production-sized PostgreSQL, seeded into the
//        database, next to a 1k database on the same cluster; reads, bulk read and list of a late
//        folder, writes, server RSS and buffer hit ratios at 1k and at N, side by side in rounds at
//        2 connections each (scenarios/scale.mjs, scale-pg.mjs)
// Figures over two scenarios ((b1)/(a), (c1)/(b1), (h1)/(b1), (b3)/(b1), (p1)/(a), (p3)/(p1) and the
// audit cost) come from windows x y y x on servers that are all up (bench/pairs.mjs): hello-world
// stays up for the whole round, the (b1) server while (h1) runs.
// PostgreSQL is a throwaway cluster (scripts/lib/pg-cluster.mjs) holding a `coffer_bench` database;
// PGlite uses a temporary data directory. Everything is stopped and removed at the end, also on
// error or Ctrl-C. Without PostgreSQL binaries (b1)/(c1) are skipped with a loud warning, except
// under CI=true, where that is an error.
//
// Exit status: 1 if any scenario saw a connection error, timeout or non-2xx response (something
// is broken), if the write scenario lost writes, or if setting up failed. The performance aim
// from the issue is printed, never enforced.
//
// Other options:
//   --warmup S          warm-up before each measurement (default 1; autocannon rounds up to 1 s)
//   --warmup-requests N ...and on until N requests were served, at most 8 s (default 10,000; 5,000 with
//                       --quick): a server's first thousands of requests are measured cold otherwise
//   --only LIST         run only these scenarios, e.g. --only a,b1
//   --rounds N          run the HTTP scenarios N times (default 1), each round on fresh servers and
//                       PostgreSQL clusters; the report shows the median round per scenario with every
//                       round's req/s, and issue 13's figures as medians of the rounds' figures. One
//                       server process's req/s varies 25-50% on a busy machine, so one round cannot say
//                       whether a ratio meets its aim. Rewrap, CLI, aead and scale run once
//   --cpu-prof DIR      run the Coffer servers under `node --cpu-prof`, profiles written to DIR
//   --server FILE       Coffer entry point to run (default server/dist/main.js), e.g. to A/B a build
//   --aead              only the AEAD micro-benchmark (with --only: in addition to those scenarios)
//   --scale             only the scale scenario; --scale-secrets N (or COFFER_BENCH_SCALE_SECRETS)
//                       sets N (default 1,000,000; e.g. 100000 for a quick look); --scale-connections
//                       its concurrency per server (default 2); COFFER_BENCH_SCALE_PAIRING=sequential
//                       measures 1k and N back to back instead of at once; COFFER_BENCH_SCALE_PG its PostgreSQL settings
//                       ("name=value ..."; "stock" for PostgreSQL's defaults; default 25% of RAM
//                       as shared_buffers, 75% as effective_cache_size)
//
// This file is the runner: which scenario runs on which server, in what order. The parts are in
// scripts/bench/: options.mjs (scenario catalogue, command line), servers.mjs (starting the
// servers under test), load.mjs (autocannon), scenarios/ (http, identity, rewrap with its
// seeding module, cli), report.mjs (tables, aims, JSON, verdict) and session.mjs (what was
// started, and its removal however the run ends).

import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findPostgresBinaries } from './lib/pg-cluster.mjs';
import { BenchError, CI, banner, info, out } from './bench/common.mjs';
import { measure } from './bench/load.mjs';
import { benchAead } from './bench/aead.mjs';
import {
  CLI_SCENARIOS, DURABLE_IDS, NOT_IN_QUICK, OPT_IN, READ_PATH, REWRAP_SCENARIOS, SCENARIOS, USAGE, WRITE_PATH, parseOptions, scenario,
} from './bench/options.mjs';
import { auditPair } from './bench/figures.mjs';
import { pairWindows } from './bench/pairs.mjs';
import { finish, printHeader } from './bench/report.mjs';
import { mergeRounds } from './bench/rounds.mjs';
import { benchCli } from './bench/scenarios/cli.mjs';
import { measureSpreadWrites, measureWrites, readRequest } from './bench/scenarios/http.mjs';
import { approleLoginRequest, jwtLoginRequest, policyReadRequest, userpassLoginRequest } from './bench/scenarios/identity.mjs';
import { runDurable } from './bench/scenarios/durable.mjs';
import { HSM_KMS_IDS, hsmKmsRequests, KMS_IDS, kmsRequests } from './bench/scenarios/kms.mjs';
import { measureRewrap } from './bench/scenarios/rewrap.mjs';
import { runScale } from './bench/scenarios/scale.mjs';
import { createBenchDatabase, softHsmToken, startCoffer, startHello, startPostgres } from './bench/servers.mjs';
import { cleanup, installCleanupHandlers, removeTempDir, session, stopChild, stopPostgres, trackTempDir } from './bench/session.mjs';

async function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n${USAGE}\n`);
    return 2;
  }
  const wanted = (id) => (opts.only ? opts.only.includes(id) : !OPT_IN.includes(id) && !(opts.quick && NOT_IN_QUICK.includes(id)));
  const started = Date.now();
  const needsServer = [...SCENARIOS, ...REWRAP_SCENARIOS].some((s) => s.backend !== 'hello' && wanted(s.id)) || wanted('aead') || wanted('scale');
  if (needsServer && !existsSync(opts.serverMain)) {
    process.stderr.write(`[bench] ${opts.serverMain} does not exist: build first (npx tsc -b), or use npm run bench\n`);
    return 1;
  }

  if (opts.rounds > 1 && !SCENARIOS.some((s) => wanted(s.id))) {
    // Nothing to repeat: --scale and --aead alone (and rewrap or CLI runs) are measured once; the
    // scale scenario takes its own rounds.
    info(`note: --rounds ${opts.rounds} ignored: it repeats the HTTP scenarios, and none is selected`);
    opts.rounds = 1;
  }
  printHeader(opts);

  const rewrapResults = new Map(); // id -> rewrap stats | { skipped: reason }
  // The HTTP scenarios, once per round (--rounds), each round on fresh servers and clusters; (r1)
  // rides along with the PostgreSQL servers of round 1 only.
  const rounds = []; // per round: Map id -> stats | { skipped: reason }
  let pgVersion = null;
  for (let i = 1; i <= opts.rounds; i++) {
    if (opts.rounds > 1) {
      out();
      info(`round ${i} of ${opts.rounds}`);
    }
    const roundWanted = i === 1 ? wanted : (id) => id !== 'r1' && wanted(id);
    const results = new Map();
    rounds.push(results);
    pgVersion = (await runRound(opts, roundWanted, results, rewrapResults, { first: i === 1 })) ?? pgVersion;
  }
  const results = rounds.length > 1 ? mergeRounds(rounds) : rounds[0];

  if (wanted('r2')) {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-rewrap-'));
    trackTempDir(dataDir);
    try {
      rewrapResults.set('r2', await measureRewrap(REWRAP_SCENARIOS[1], { dataDir }, opts.rewrapSecrets, opts));
    } finally {
      removeTempDir(dataDir);
    }
  }

  // (d1)/(d2) CLI and SDK
  let cliResults = {};
  if (CLI_SCENARIOS.some(wanted)) cliResults = await benchCli(opts, wanted);

  let aead = null;
  if (wanted('aead')) aead = await benchAead({ serverMain: opts.serverMain, seconds: opts.quick ? 0.5 : 4 });

  let scale = null;
  if (wanted('scale')) {
    if (!findPostgresBinaries()) {
      noPostgres(['scale']);
      scale = { skipped: 'PostgreSQL binaries not found' };
    } else {
      scale = await runScale(opts);
      pgVersion ??= scale.pgVersion;
    }
  }

  return finish({ opts, results, roundResults: rounds, rewrapResults, cliResults, aead, scale, pgVersion, started });
}

/**
 * One round of the HTTP scenarios, from (a) hello-world to (b2)/(c2) PGlite, each group on
 * servers (and PostgreSQL clusters) it starts and stops itself: their stats go to `results`,
 * (r1)'s to `rewrapResults`. `first`: the first round (the missing-PostgreSQL warning once).
 * Returns the PostgreSQL version, if one ran.
 */
async function runRound(opts, wanted, results, rewrapResults, { first }) {
  let pgVersion = null;
  // (a) hello world, up for the whole round: (b1) and (p1) measure their figures over it in windows
  // b1 a a b1 and p1 a a p1 (bench/pairs.mjs); alone only when neither runs.
  const hello = wanted('a') ? await startHello() : null;
  try {
    const measureA = hello ? (o) => measure(SCENARIOS[0], hello, { url: `${hello.base}/hello`, method: 'GET', headers: {} }, o) : null;
    const havePostgres = Boolean(findPostgresBinaries());
    if (measureA && !(havePostgres && (wanted('b1') || wanted('p1')))) results.set('a', await measureA(opts));
    pgVersion = await runPostgres(opts, wanted, results, rewrapResults, { first, measureA });

    // (p1)-(p3) durable PostgreSQL, AppRole machine tokens (its own cluster, after the other one stopped)
    const durableWanted = DURABLE_IDS.filter(wanted);
    if (durableWanted.length > 0) {
      if (!havePostgres) {
        if (first) noPostgres(durableWanted);
        for (const id of durableWanted) results.set(id, { skipped: 'PostgreSQL binaries not found' });
      } else {
        pgVersion = await runDurable(opts, wanted, results, measureA);
      }
    }
  } finally {
    if (hello) await stopChild(hello.child);
  }

  // (b2)/(c2) PGlite
  if (wanted('b2') || wanted('c2')) {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-pglite-'));
    trackTempDir(dataDir);
    try {
      const server = await startCoffer('pglite', { COFFER_DATA_DIR: dataDir }, opts);
      try {
        if (wanted('b2')) results.set('b2', await measure(SCENARIOS[2], server, readRequest(server), opts));
        if (wanted('c2')) results.set('c2', await measureWrites(SCENARIOS[4], server, opts));
      } finally {
        await stopChild(server.child);
      }
    } finally {
      removeTempDir(dataDir);
    }
  }

  return pgVersion;
}

/**
 * (b1), (c1), (b0), (b3), (h1), the KMS and login scenarios and (r1), on one throwaway PostgreSQL
 * cluster. Figures over (b1) are measured in windows b1 y y b1 (bench/pairs.mjs), each pair led by
 * the last (b1) window of the pair before: b1 a a b1 b0 b0 b1 b3 b3 b1 c1 c1 b1 h1 h1 b1. Returns
 * the PostgreSQL version, if it ran.
 */
async function runPostgres(opts, wanted, results, rewrapResults, { first, measureA }) {
  const pgIds = ['b1', 'c1', 'c3', 'b0', 'b3', 'l1', 'l2', 'l3', 'r1', 'h1', ...HSM_KMS_IDS, ...KMS_IDS];
  if (!pgIds.some(wanted)) return null;
  if (!findPostgresBinaries()) {
    const pgWanted = pgIds.filter(wanted);
    if (first) noPostgres(pgWanted);
    for (const id of pgWanted) (id === 'r1' ? rewrapResults : results).set(id, { skipped: 'PostgreSQL binaries not found' });
    return null;
  }
  const pg = await startPostgres();
  const startNoAuditServer = async () =>
    startCoffer('postgres-noaudit', { COFFER_DATABASE_URL: await createBenchDatabase('coffer_bench_noaudit'), COFFER_AUDIT_SINKS: 'none' }, opts);
  info(`PostgreSQL ${pg.version} ready (database coffer_bench)`);
  try {
    let hsmDone = false;
    if (['b1', 'c1', 'c3', 'b3', 'l1', 'l2', 'l3', ...KMS_IDS].some(wanted)) {
      const server = await startCoffer('postgres', { COFFER_DATABASE_URL: pg.url, COFFER_LOGIN_RATE_PER_SECOND: '0' }, opts);
      try {
        const b1 = { id: 'b1', measure: (o) => measure(SCENARIOS[1], server, readRequest(server), o), window: null };
        // Each pair below is led by the last (b1) window; without (b1) its scenario runs alone.
        const pairWithB1 = async (inner, y) => {
          if (b1.window) b1.window = await pairWindows(results, { lead: b1, inner, y, opts });
          else results.set(inner.id, await inner.measure(opts));
        };
        if (wanted('b1')) {
          b1.window = await b1.measure(opts);
          results.set('b1', b1.window);
          if (measureA) b1.window = await pairWindows(results, { lead: b1, inner: { id: 'a', measure: measureA }, y: 'b1', opts });
        }
        if (b1.window && wanted('b0')) {
          // The audit log's cost from windows b1 b0 b0 b1: a ratio of two servers' runs, measured so
          // that the machine's drift over the run cancels out.
          const noAudit = await startNoAuditServer();
          try {
            const b0 = { id: 'b0', measure: (o) => measure(SCENARIOS[5], noAudit, readRequest(noAudit), o) };
            b1.window = await pairWindows(results, { lead: b1, inner: b0, y: 'b1', opts });
            results.set('auditPair', auditPair(results.get('pair:b1/b0')));
          } finally {
            await stopChild(noAudit.child);
          }
        }
        if (wanted('b3')) {
          const policyRead = await policyReadRequest(server, READ_PATH);
          await pairWithB1({ id: 'b3', measure: (o) => measure(scenario('b3'), server, policyRead, o) }, 'b3');
        }
        if (wanted('c1')) {
          // Each write window on its own secret: the check after it counts that window's writes.
          let n = 0;
          const c1 = (o) => measureWrites(SCENARIOS[3], server, o, n++ === 0 ? {} : { path: `${WRITE_PATH}-${n}` });
          await pairWithB1({ id: 'c1', measure: c1 }, 'c1');
        }
        if (['h1', ...HSM_KMS_IDS].some(wanted)) {
          await runHsm(opts, wanted, results, b1.window ? pairWithB1 : null);
          hsmDone = true;
        }
        if (KMS_IDS.some(wanted)) {
          const kms = await kmsRequests(server);
          for (const id of KMS_IDS.filter(wanted)) results.set(id, await measure(scenario(id), server, kms[id], opts));
        }
        if (wanted('c3')) results.set('c3', await measureSpreadWrites(scenario('c3'), server, opts));
        if (['l1', 'l2', 'l3'].some(wanted)) {
          if (wanted('l1')) results.set('l1', await measure(scenario('l1'), server, await userpassLoginRequest(server), opts));
          if (wanted('l2')) results.set('l2', await measure(scenario('l2'), server, await approleLoginRequest(server), opts));
          if (wanted('l3')) {
            const jwtLogin = await jwtLoginRequest(server);
            try {
              results.set('l3', await measure(scenario('l3'), server, jwtLogin.request, opts));
            } finally {
              await jwtLogin.stop();
            }
          }
        }
      } finally {
        await stopChild(server.child);
      }
    }
    if (!hsmDone && ['h1', ...HSM_KMS_IDS].some(wanted)) await runHsm(opts, wanted, results, null);
    if (wanted('b0') && !results.has('b0')) {
      const server = await startNoAuditServer();
      try {
        results.set('b0', await measure(SCENARIOS[5], server, readRequest(server), opts));
      } finally {
        await stopChild(server.child);
      }
    }
    if (wanted('r1')) {
      const url = await createBenchDatabase('coffer_bench_rewrap');
      rewrapResults.set('r1', await measureRewrap(REWRAP_SCENARIOS[0], { databaseUrl: url }, opts.rewrapSecrets, opts));
    }
  } finally {
    const c = session.cluster;
    session.cluster = null;
    if (c) await stopPostgres(c);
  }
  return pg.version;
}

/**
 * (h1) and the HSM KMS scenarios on a server with the PKCS#11 seal (SoftHSM2), on the running
 * cluster; (h1) paired with (b1) through `pairWithB1` when the (b1) server is up.
 */
async function runHsm(opts, wanted, results, pairWithB1) {
  const hsm = softHsmToken();
  if (!hsm) {
    if (CI) throw new BenchError('SoftHSM2 (softhsm2-util, libsofthsm2.so) is required under CI=true for scenario h1');
    for (const id of ['h1', ...HSM_KMS_IDS]) if (wanted(id)) results.set(id, { skipped: 'SoftHSM2 not found (apt-get install softhsm2)' });
    return;
  }
  const url = await createBenchDatabase('coffer_bench_hsm');
  const server = await startCoffer('postgres-pkcs11', { COFFER_DATABASE_URL: url, ...hsm.env }, opts);
  try {
    if (wanted('h1')) {
      const h1 = { id: 'h1', measure: (o) => measure(SCENARIOS.find((x) => x.id === 'h1'), server, readRequest(server), o) };
      if (pairWithB1) await pairWithB1(h1, 'h1');
      else results.set('h1', await h1.measure(opts));
    }
    if (HSM_KMS_IDS.some(wanted)) {
      const kms = await hsmKmsRequests(server);
      for (const id of HSM_KMS_IDS.filter(wanted)) results.set(id, await measure(scenario(id), server, kms[id], opts));
    }
  } finally {
    await stopChild(server.child);
  }
}

/** The loud warning when PostgreSQL is missing for `ids`; under CI=true, an error. */
function noPostgres(ids) {
  const lines = [
    `${CI ? 'ERROR' : 'WARNING'}: PostgreSQL server binaries (initdb, pg_ctl) not found.`,
    `Scenarios ${ids.join(', ')} (Coffer on PostgreSQL) ${CI ? 'cannot run, and CI=true forbids skipping them.' : 'are SKIPPED.'}`,
    '',
    'Install it:  Debian/Ubuntu:  sudo apt-get install postgresql',
    '             macOS:          brew install postgresql@15',
    'or set PG_BINDIR to the directory holding initdb and pg_ctl.',
  ];
  process.stderr.write(`${banner(lines)}\n`);
  if (CI) throw new BenchError('PostgreSQL binaries are required under CI=true');
}

installCleanupHandlers();
main()
  .then(
    (code) => code,
    (err) => {
      if (!session.shuttingDown) {
        const text = err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
        process.stderr.write(`[bench] error: ${text}\n`);
      }
      return 1;
    },
  )
  .then(async (code) => {
    if (session.shuttingDown) return; // the signal handler cleans up and exits
    await cleanup();
    process.exit(code);
  });
