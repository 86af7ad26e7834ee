// Everything the bench starts, and its removal: server children, the PostgreSQL cluster,
// temporary directories. Stopped in order at the end, all at once on a signal, and — if this
// process is killed outright — by a guard in each child and a detached reaper.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import os from 'node:os';
import { spawnCaptured, stopProcess } from '../lib/child.mjs';
import { stopPostgresClusterSync } from '../lib/pg-cluster.mjs';
import { info, root } from './common.mjs';

/** What is running now; `cluster` and `currentLoad` are set by the modules that start them. */
export const session = {
  /** The throwaway PostgreSQL cluster, while it runs. */
  cluster: null,
  /** The autocannon instance of the measurement in progress. */
  currentLoad: null,
  shuttingDown: false,
};

const children = new Set();
const tempDirs = new Set();
/** Data directories of PostgreSQL clusters we started, until they are stopped and removed. */
const clusterDirs = new Set();

// If this process is killed outright (SIGKILL, OOM killer: no handler runs), nothing above
// would be cleaned up. Two guards cover that:
//  * every server child is started with CHILD_GUARD preloaded: it terminates the child
//    (SIGTERM, a clean shutdown) as soon as its parent, this process, is gone;
//  * a detached reaper process holds the list of cluster and temporary directories on a pipe
//    from us; when the pipe closes (we exited, however) it removes whatever is still listed.
const CHILD_GUARD = `data:text/javascript,${encodeURIComponent(
  'const parent = process.ppid; setInterval(() => { if (process.ppid !== parent) process.kill(process.pid, "SIGTERM"); }, 500).unref();',
)}`;
const REAPER = `
  import { rmSync } from 'node:fs';
  const { stopPostgresClusterSync } = await import(process.argv[1]);
  const clusters = new Set(), dirs = new Set();
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\\n')) !== -1; buf = buf.slice(i + 1)) {
      const line = buf.slice(0, i), op = line.slice(0, 1), kind = line.slice(1, line.indexOf(' ')), dir = line.slice(line.indexOf(' ') + 1);
      const set = kind === 'cluster' ? clusters : dirs;
      if (op === '+') set.add(dir); else set.delete(dir);
    }
  });
  process.stdin.on('end', () => {
    if (clusters.size + dirs.size === 0) process.exit(0);
    // Give the server children a moment to notice and shut down first.
    setTimeout(() => {
      for (const dir of clusters) stopPostgresClusterSync(dir);
      for (const dir of dirs) try { rmSync(dir, { recursive: true, force: true, maxRetries: 3 }); } catch {}
      process.exit(0);
    }, 2000);
  });
`;
let reaper = null;

function tellReaper(line) {
  if (!reaper) {
    const pgCluster = new URL('../lib/pg-cluster.mjs', import.meta.url).href;
    reaper = spawn(process.execPath, ['--input-type=module', '-e', REAPER, pgCluster], {
      cwd: root,
      detached: true, // its own process group: a Ctrl-C meant for us does not reach it
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    reaper.on('error', () => {}); // best effort
    reaper.stdin.on('error', () => {});
    reaper.unref();
    reaper.stdin.unref?.();
  }
  reaper.stdin.write(`${line}\n`);
}

export function trackTempDir(dir) {
  tempDirs.add(dir);
  tellReaper(`+dir ${dir}`);
}

export function trackClusterDir(dir) {
  clusterDirs.add(dir);
  tellReaper(`+cluster ${dir}`);
}

export function untrackClusterDir(dir) {
  clusterDirs.delete(dir);
  tellReaper(`-cluster ${dir}`);
}

/**
 * Spawns `node args…`, keeping the last 64 KiB of its output for error messages. The handle:
 * { child, name, output(), exited } (exited resolves with { code, signal[, error] }).
 */
export function startChild(name, args, env) {
  if (session.shuttingDown) throw new Error('shutting down');
  const run = spawnCaptured(process.execPath, ['--import', CHILD_GUARD, ...args], { cwd: root, env, maxOutput: 65536 });
  const handle = { child: run.child, name, output: () => run.output().trimEnd(), exited: run.exited };
  handle.exited.then(() => children.delete(handle));
  children.add(handle);
  return handle;
}

/** SIGTERM (servers shut down cleanly, PGlite closes its files), SIGKILL after `graceMs`. */
export function stopChild(handle, graceMs = 10_000) {
  return stopProcess(handle.child, handle.exited, {
    graceMs,
    onKill: () => info(`${handle.name} did not stop within ${graceMs / 1000} s; killing it`),
  });
}

export function removeTempDir(dir) {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    /* best effort */
  }
  tempDirs.delete(dir);
  tellReaper(`-dir ${dir}`);
}

/** Stops a cluster started by servers.mjs and forgets its directory. */
export async function stopPostgres(c) {
  try {
    await c.stop();
  } finally {
    stopPostgresClusterSync(c.dataDir); // a no-op when stop() removed it
    untrackClusterDir(c.dataDir);
  }
}

/**
 * Stops everything still running and removes temporary data. On the normal path the servers go
 * first, then PostgreSQL; when interrupted (`fast`), all at once with a short grace period, so
 * that a supervisor's follow-up SIGKILL is less likely to catch us half-way.
 */
export async function cleanup({ fast = false } = {}) {
  session.currentLoad?.stop?.();
  const stopCluster = async () => {
    const c = session.cluster;
    session.cluster = null;
    if (c) await stopPostgres(c);
  };
  const stopChildren = Promise.all([...children].map((c) => stopChild(c, fast ? 2000 : 5000)));
  if (fast) await Promise.all([stopChildren, stopCluster()]);
  else {
    await stopChildren;
    await stopCluster();
  }
  for (const dir of [...tempDirs]) removeTempDir(dir);
}

/** The exit and signal handlers: call once, before anything is started. */
export function installCleanupHandlers() {
  // Last line of defence (uncaught error, process.exit from a second Ctrl-C): synchronous.
  process.on('exit', () => {
    for (const { child } of children) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const dir of clusterDirs) stopPostgresClusterSync(dir); // idempotent; never throws
    for (const dir of [...tempDirs]) removeTempDir(dir);
  });

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      const code = 128 + (os.constants.signals[sig] ?? 1);
      if (session.shuttingDown) process.exit(code); // second signal: the exit handler kills everything
      session.shuttingDown = true;
      process.stderr.write(`\n[bench] ${sig}: stopping servers and removing temporary data...\n`);
      cleanup({ fast: true }).finally(() => process.exit(code));
    });
  }
}
