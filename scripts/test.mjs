#!/usr/bin/env node
// Test runner behind `npm test` (after `tsc -b`).
//
//  * Provides a real PostgreSQL to the suites: uses COFFER_TEST_DATABASE_URL if set, otherwise
//    starts a throwaway cluster (scripts/lib/pg-cluster.mjs) that is always torn down afterwards.
//  * Detects SoftHSM2 and exports COFFER_TEST_SOFTHSM_MODULE for the HSM suites.
//  * Strict mode (CI=true|1 or COFFER_TEST_STRICT=1): a missing dependency or any skipped
//    test is a failure. Otherwise missing dependencies only skip suites, with a loud banner.
//  * Runs jest (native ESM on the compiled test/dist) and ends the output with exactly
//      tests: N passed, N failed[, N skipped]
//    which CI parsers read. Exits with jest's exit code (or 1 for strict-mode violations).
//
// Extra arguments are passed to jest:  npm test -- -t 'pattern'   /   npm test -- test/dist/foo

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPostgresBinaries, startPostgresCluster, stopPostgresClusterSync } from './lib/pg-cluster.mjs';
import { findSoftHsm, writeSoftHsmConf } from './lib/softhsm.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const truthy = (v) => /^(1|true|yes)$/i.test(String(v ?? '').trim());
const strict = truthy(process.env.CI) || truthy(process.env.COFFER_TEST_STRICT);

// Markers appended to describe() names by test/helpers/env.ts when a suite is skipped.
const SKIP_MARKERS = {
  postgres: '[skipped: PostgreSQL unavailable]',
  softhsm: '[skipped: SoftHSM2 unavailable]',
};

const out = (s = '') => process.stdout.write(`${s}\n`);
const info = (s) => out(`[test] ${s}`);

function banner(lines) {
  const width = Math.max(...lines.map((l) => l.length));
  const bar = '!'.repeat(width + 8);
  const body = lines.map((l) => `!!  ${l.padEnd(width)}  !!`);
  return ['', bar, ...body, bar, ''].join('\n');
}

const PG_INSTALL = [
  'Install it:  Debian/Ubuntu:  sudo apt-get install postgresql',
  '             macOS:          brew install postgresql@15',
  'or point the tests at a server:  COFFER_TEST_DATABASE_URL=postgres://user@host:port/db',
  '(the role needs CREATEDB; every suite creates and drops its own database)',
];
const HSM_INSTALL = [
  'Install it:  Debian/Ubuntu:  sudo apt-get install softhsm2',
  '             macOS:          brew install softhsm',
  'or set SOFTHSM2_MODULE=/path/to/libsofthsm2.so',
];

/**
 * A dependency is unavailable: in strict mode abort before running anything, otherwise
 * print a loud banner now and remember it for the summary.
 */
function unavailable(problem, consequence, install) {
  if (strict) {
    const lines = ['ERROR: strict mode (CI=true or COFFER_TEST_STRICT=1) - nothing may be skipped.', '', ...problem, '', ...install];
    process.stderr.write(`${banner(lines)}\n`);
    process.stderr.write('[test] aborting before running any test\n');
    process.exit(1);
  }
  const lines = [`WARNING: ${problem[0]}`, ...problem.slice(1), consequence, '', ...install];
  missing.push(lines);
  process.stderr.write(`${banner(lines)}\n`);
}

// ---------------------------------------------------------------------------------------
// Cleanup: the throwaway cluster and temp dir must go away however we exit.
// ---------------------------------------------------------------------------------------
let cluster = null;
let startingDir = null; // set while the cluster is being created
let tmpDir = null;
let child = null;

function cleanup() {
  if (cluster) {
    const c = cluster;
    cluster = null;
    c.stopSync();
  }
  if (startingDir) {
    const d = startingDir;
    startingDir = null;
    stopPostgresClusterSync(d);
  }
  if (tmpDir) {
    rmSync(tmpDir, { recursive: true, force: true });
    tmpDir = null;
  }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    // Forward to jest (on Ctrl-C it usually got the same SIGINT from the tty already).
    if (child && child.exitCode === null) child.kill(sig);
    info(`${sig} received, stopping`);
    cleanup();
    process.exit(128 + (os.constants.signals[sig] ?? 1));
  });
}

// ---------------------------------------------------------------------------------------
// Dependencies
// ---------------------------------------------------------------------------------------
const env = { ...process.env };
const missing = []; // banners to re-print in the summary

if (strict) {
  env.COFFER_TEST_STRICT = '1';
  info('strict mode: missing dependencies and skipped tests are failures');
}

// SoftHSM2 first: it is a cheap check, and in strict mode we fail before starting PostgreSQL.
const hsm = findSoftHsm();
if (hsm.ok) {
  env.COFFER_TEST_SOFTHSM_MODULE = hsm.module;
  env.COFFER_TEST_SOFTHSM_UTIL = hsm.util;
  info(`SoftHSM2: ${hsm.module} (${hsm.util})`);
} else {
  delete env.COFFER_TEST_SOFTHSM_MODULE;
  delete env.COFFER_TEST_SOFTHSM_UTIL;
  unavailable(
    [
      'SoftHSM2 (libsofthsm2.so + softhsm2-util) was not found.',
      hsm.module ? `  module: ${hsm.module}` : `  module: not found${hsm.fromEnv ? ` (SOFTHSM2_MODULE=${hsm.fromEnv} does not exist)` : ''}`,
      `  softhsm2-util: ${hsm.util ?? 'not found on PATH'}`,
    ],
    'All suites that need a PKCS#11 HSM (describeIfSoftHsm) are SKIPPED.',
    HSM_INSTALL,
  );
}

if (process.env.COFFER_TEST_DATABASE_URL) {
  // The server's own redaction (built by `npm test` before this runs).
  const { redactUrl } = await import('@coffer/server/storage/redact-url');
  info(`PostgreSQL: using COFFER_TEST_DATABASE_URL (${redactUrl(process.env.COFFER_TEST_DATABASE_URL)})`);
} else if (findPostgresBinaries()) {
  try {
    cluster = await startPostgresCluster({
      log: (m) => info(`PostgreSQL: ${m}`),
      onDataDir: (d) => (startingDir = d),
    });
    startingDir = null;
    env.COFFER_TEST_DATABASE_URL = cluster.url;
  } catch (err) {
    startingDir = null; // startPostgresCluster already cleaned up
    const msg = err instanceof Error ? err.message : String(err);
    unavailable(
      ['Could not start a throwaway PostgreSQL cluster:', ...msg.split('\n').slice(0, 20)],
      'All suites that need a real PostgreSQL (describeIfPostgres) are SKIPPED.',
      ['Fix the error above, or set COFFER_TEST_DATABASE_URL=postgres://user@host:port/db'],
    );
  }
} else {
  unavailable(
    ['PostgreSQL server binaries (initdb, pg_ctl) were not found', 'on PATH or in /usr/lib/postgresql/*/bin.'],
    'All suites that need a real PostgreSQL (describeIfPostgres) are SKIPPED.',
    PG_INSTALL,
  );
}
if (!env.COFFER_TEST_DATABASE_URL) delete env.COFFER_TEST_DATABASE_URL;

// ---------------------------------------------------------------------------------------
// Jest
// ---------------------------------------------------------------------------------------
removeStaleCompiledTests(path.join(root, 'test'));

tmpDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-test-'));
const resultsFile = path.join(tmpDir, 'jest-results.json');
if (env.COFFER_TEST_SOFTHSM_MODULE) {
  // SoftHSM2 reads SOFTHSM2_CONF with getenv() at C_Initialize, and jest gives each test file a
  // copy of process.env that native code never sees: so the tests' private token directory is
  // set here, for the whole run. Suites create their own uniquely labelled tokens in it.
  const tokens = path.join(tmpDir, 'softhsm-tokens');
  env.SOFTHSM2_CONF = writeSoftHsmConf(path.join(tmpDir, 'softhsm2.conf'), tokens);
  info(`SoftHSM2: private token directory ${tokens} (SOFTHSM2_CONF)`);
}
const jestBin = path.join(root, 'node_modules', 'jest', 'bin', 'jest.js');
const quiet = '--disable-warning=ExperimentalWarning';
// --experimental-vm-modules reaches jest's workers via execArgv; NODE_OPTIONS silences the
// "VM Modules is an experimental feature" warning in the workers as well.
env.NODE_OPTIONS = [process.env.NODE_OPTIONS, quiet].filter(Boolean).join(' ');

const args = [
  '--experimental-vm-modules',
  quiet,
  jestBin,
  '--json',
  '--outputFile',
  resultsFile,
  ...process.argv.slice(2),
];
const exit = await new Promise((resolve) => {
  child = spawn(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
  child.on('error', (err) => {
    process.stderr.write(`[test] could not run jest: ${err.message}\n`);
    resolve({ code: 1, signal: null });
  });
  child.on('exit', (code, signal) => resolve({ code, signal }));
});
child = null;
let exitCode = exit.code ?? (exit.signal ? 128 + (os.constants.signals[exit.signal] ?? 1) : 1);

// ---------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------
let results = null;
try {
  results = JSON.parse(readFileSync(resultsFile, 'utf8'));
} catch {
  /* jest crashed before writing results (config error, build problem, signal...) */
}

// Stop the cluster before printing the summary, so nothing is printed after the last line.
cleanup();

const lines = [''];
let passed = 0;
let failed = 0;
let skipped = 0;
if (results) {
  passed = results.numPassedTests ?? 0;
  skipped = (results.numPendingTests ?? 0) + (results.numTodoTests ?? 0);
  // Suites that crash while loading (e.g. a bad import) contribute no failed *tests*; count
  // each as one failure so the summary line can never look green for a broken suite.
  const brokenSuites = (results.testResults ?? []).filter((s) => s.status === 'failed' && (s.assertionResults ?? []).length === 0);
  failed = (results.numFailedTests ?? 0) + brokenSuites.length;
  if (brokenSuites.length) {
    lines.push(`Test suites that failed to run (${brokenSuites.length}, counted as failures):`);
    for (const s of brokenSuites) lines.push(`  ✗ ${path.relative(root, s.name)}`);
    lines.push('');
  }

  // Suites skipped because a dependency is missing (marked by test/helpers/env.ts).
  const skippedFor = { postgres: new Set(), softhsm: new Set() };
  for (const suite of results.testResults ?? []) {
    for (const t of suite.assertionResults ?? []) {
      if (t.status !== 'pending') continue;
      for (const [dep, marker] of Object.entries(SKIP_MARKERS)) {
        const title = (t.ancestorTitles ?? []).find((a) => a.includes(marker));
        if (title) skippedFor[dep].add(`${path.relative(root, suite.name)} › ${title.replace(marker, '').trim()}`);
      }
    }
  }
  const depNames = { postgres: 'PostgreSQL', softhsm: 'SoftHSM2' };
  for (const [dep, suites] of Object.entries(skippedFor)) {
    if (!suites.size) continue;
    lines.push(`Skipped for missing ${depNames[dep]} (${suites.size}):`);
    for (const s of suites) lines.push(`  ○ ${s}`);
    lines.push('');
  }
  const pendingSuites = results.numPendingTestSuites ?? 0;
  if (strict && (skipped > 0 || pendingSuites > 0)) {
    lines.push(`ERROR (strict mode): ${skipped} skipped/todo test(s) and ${pendingSuites} skipped test suite(s); nothing may be skipped in CI.`);
    lines.push('');
    if (exitCode === 0) exitCode = 1;
  }
} else {
  // e.g. "No tests found", a config error, or jest killed by a signal.
  lines.push(`[test] jest produced no results (exit ${exit.code ?? exit.signal}); see the output above.`);
  lines.push('');
  if (exitCode === 0) exitCode = 1;
  failed = 1;
}
if (results && exit.code !== 0 && failed === 0) {
  lines.push(`[test] jest exited with code ${exit.code ?? exit.signal} although no test failed; see the output above.`);
  lines.push('');
}

for (const b of missing) lines.push(banner(b));

lines.push(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.stdout.write(`${lines.join('\n')}\n`);
process.exitCode = exitCode;

/**
 * `tsc -b` never deletes the output of a deleted/renamed .ts file, so a removed test would
 * keep running from test/dist. Delete compiled files whose source no longer exists.
 */
function removeStaleCompiledTests(testDir) {
  const distDir = path.join(testDir, 'dist');
  if (!existsSync(distDir)) return;
  for (const rel of readdirSync(distDir, { recursive: true })) {
    const m = /^(.*)\.js$/.exec(String(rel));
    if (!m) continue;
    const base = m[1];
    if (['.ts', '.mts', '.tsx'].some((ext) => existsSync(path.join(testDir, base + ext)))) continue;
    if (existsSync(path.join(testDir, `${base}.js`))) continue; // plain JS source (allowJs)
    for (const ext of ['.js', '.js.map', '.d.ts', '.d.ts.map']) rmSync(path.join(distDir, base + ext), { force: true });
    info(`removed stale test/dist/${base}.js (its source test/${base}.ts no longer exists)`);
  }
}
