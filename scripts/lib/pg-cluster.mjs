// Throwaway PostgreSQL cluster for tests, the bench and CI. Dependency-free (node: built-ins
// only), so CI can start it before `npm ci`; the command line is scripts/pg-cluster.mjs.
//
//   import { startPostgresCluster } from './lib/pg-cluster.mjs';
//   const cluster = await startPostgresCluster();   // { url, dataDir, port, stop(), stopSync(), pauseServer(), resumeServer(), restartServer() }
//   ...
//   await cluster.stop();
//
// The cluster runs on 127.0.0.1 on a random free (non-default) port, with trust auth for
// superuser `coffer`, durability switched off (fsync, synchronous_commit, full_page_writes;
// `durable: true` keeps PostgreSQL's defaults, as production runs) and its Unix socket inside the data directory, so it never collides with a system server.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, chownSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './port.mjs';

export const DIR_PREFIX = 'coffer-pg-';
const SUPERUSER = 'coffer';
const START_TIMEOUT_S = 60;

/** Is `file` an executable regular file? */
function isExecutable(file) {
  try {
    const st = statSync(file);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function hasServerBinaries(dir) {
  return isExecutable(path.join(dir, 'initdb')) && isExecutable(path.join(dir, 'pg_ctl'));
}

/**
 * Locate the PostgreSQL server binaries. Looks on PATH first (following symlinks, so that
 * initdb and pg_ctl always come from the same installation), then in the highest-versioned
 * /usr/lib/postgresql/<version>/bin (Debian/Ubuntu layout, which is not on PATH).
 *
 * @returns {{ binDir: string, initdb: string, pgCtl: string } | null}
 */
export function findPostgresBinaries() {
  const candidates = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const initdb = path.join(dir, 'initdb');
    if (!isExecutable(initdb)) continue;
    try {
      candidates.push(path.dirname(realpathSync(initdb)));
    } catch {
      /* dangling symlink */
    }
    candidates.push(dir);
  }
  const debianRoot = '/usr/lib/postgresql';
  try {
    const versions = readdirSync(debianRoot)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    for (const v of versions) candidates.push(path.join(debianRoot, v, 'bin'));
  } catch {
    /* not a Debian-style install */
  }
  for (const dir of candidates) {
    if (hasServerBinaries(dir)) {
      return { binDir: dir, initdb: path.join(dir, 'initdb'), pgCtl: path.join(dir, 'pg_ctl') };
    }
  }
  return null;
}

/** uid/gid of a local user, or null if it does not exist. */
function lookupUser(name) {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return null;
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * PostgreSQL refuses to run as root. When we are root, pick an unprivileged account
 * (`postgres` if present, else `nobody`) and run the server tools through runuser.
 */
function pickRunAs() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const user = lookupUser('postgres') ?? lookupUser('nobody');
  if (!user) throw new Error('running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL');
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser', '/bin/runuser'].find(isExecutable);
  if (!runuser) throw new Error('running as root, but `runuser` (util-linux) was not found; cannot drop privileges for PostgreSQL');
  return { ...user, runuser };
}

/** Build [command, args] for running `bin args` as the given user (or directly). */
function asUser(runAs, bin, args) {
  return runAs ? [runAs.runuser, ['-u', runAs.name, '--', bin, ...args]] : [bin, args];
}

/** Run a command asynchronously, collecting output; resolves with { code, output }. */
function run(runAs, bin, args, { cwd } = {}) {
  const [cmd, argv] = asUser(runAs, bin, args);
  return new Promise((resolve, reject) => {
    // stdin is /dev/null; stdout/stderr are pipes that we read. The postmaster started by
    // pg_ctl redirects its own output to the log file, so it does not keep these pipes open.
    const child = spawn(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), output }));
  });
}

function runSync(runAs, bin, args, { cwd } = {}) {
  const [cmd, argv] = asUser(runAs, bin, args);
  const r = spawnSync(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  return { code: r.status ?? 1, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** Quote a value for the shell command line pg_ctl builds from `-o`. */
export function shq(value) {
  return `'${String(value).replace(/'/g, `'\\''`)}'`;
}

/**
 * Speak just enough of the PostgreSQL wire protocol to confirm the server accepts a
 * session (startup packet -> ... -> ReadyForQuery) for `user` on database `postgres`.
 */
function probe(port, user, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const params = Buffer.from(`user\0${user}\0database\0postgres\0\0`, 'utf8');
    const startup = Buffer.alloc(8 + params.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE(196608, 4); // protocol 3.0
    params.copy(startup, 8);
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (ok, why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ok) {
        const terminate = Buffer.from([0x58, 0, 0, 0, 4]); // 'X'
        sock.end(terminate);
      } else {
        sock.destroy();
      }
      resolve({ ok, why });
    };
    const sock = net.connect({ host: '127.0.0.1', port }, () => sock.write(startup));
    const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
    sock.on('error', (err) => finish(false, err.message));
    sock.on('close', () => finish(false, 'connection closed'));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const type = String.fromCharCode(buf[0]);
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) return;
        const body = buf.subarray(5, 1 + len);
        buf = buf.subarray(1 + len);
        if (type === 'Z') return finish(true);
        if (type === 'E') return finish(false, body.toString('utf8').replace(/\0/g, ' ').trim());
        if (type === 'R' && body.readInt32BE(0) !== 0) return finish(false, `server wants authentication method ${body.readInt32BE(0)}`);
      }
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tail(file, lines = 30) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Owner of a path as a runAs-like object (for `stop <dir>` from the CLI). */
function runAsForDir(dir) {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const runAs = pickRunAs();
  try {
    const { uid } = statSync(dir);
    if (uid === 0) return null;
    const name = spawnSync('id', ['-nu', String(uid)], { encoding: 'utf8' });
    if (name.status === 0 && name.stdout.trim()) return { ...runAs, name: name.stdout.trim(), uid };
  } catch {
    /* fall through */
  }
  return runAs;
}

/**
 * Stop a cluster started by startPostgresCluster (immediate shutdown) and delete its
 * directory. Synchronous so it can run from `exit`/signal handlers. Never throws.
 */
export function stopPostgresClusterSync(dataDir, { binaries = findPostgresBinaries(), runAs = runAsForDir(dataDir) } = {}) {
  if (!dataDir || !existsSync(dataDir)) return;
  if (binaries && existsSync(path.join(dataDir, 'postmaster.pid'))) {
    runSync(runAs, binaries.pgCtl, ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '30'], { cwd: dataDir });
  }
  removeClusterDir(dataDir);
}

function removeClusterDir(dataDir) {
  // Refuse to delete anything that does not look like one of our throwaway clusters.
  const looksOurs = path.basename(dataDir).startsWith(DIR_PREFIX) || existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!looksOurs) return;
  try {
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    /* best effort */
  }
}

/**
 * Create, start and wait for a throwaway cluster.
 *
 * `onDataDir` is called as soon as the directory exists, so a caller can clean it up
 * (stopPostgresClusterSync) even if it is interrupted while the cluster is starting.
 *
 * `settings`: further server settings (`-c name=value`), e.g. the bench's production-sized
 * `shared_buffers`; they come last, so they win over the defaults above.
 *
 * @param {{ log?: (msg: string) => void, maxConnections?: number, onDataDir?: (dir: string) => void, durable?: boolean, settings?: Record<string, string> }} [options]
 * @returns {Promise<{ url: string, port: number, dataDir: string, stop(): Promise<void>, stopSync(): void,
 *   pauseServer(o?: { mode?: 'smart' | 'fast' | 'immediate' }): Promise<void>, resumeServer(): Promise<void>,
 *   restartServer(o?: { mode?: 'smart' | 'fast' | 'immediate' }): Promise<void> }>}
 */
export async function startPostgresCluster({ log = () => {}, maxConnections = 200, onDataDir = () => {}, durable = false, settings = {} } = {}) {
  const binaries = findPostgresBinaries();
  if (!binaries) {
    throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin');
  }
  const runAs = pickRunAs();

  // One directory serves as PGDATA, Unix socket directory and log location.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), DIR_PREFIX));
  onDataDir(dataDir);
  const logFile = path.join(dataDir, 'postgres.log');
  const cleanupOnError = () => stopPostgresClusterSync(dataDir, { binaries, runAs });
  try {
    if (runAs) chownSync(dataDir, runAs.uid, runAs.gid);

    log(`initdb ${dataDir} (${binaries.binDir}${runAs ? `, as ${runAs.name}` : ''})`);
    const init = await run(
      runAs,
      binaries.initdb,
      ['-D', dataDir, '-A', 'trust', '-U', SUPERUSER, '--no-sync', '-E', 'UTF8', '--no-locale'],
      { cwd: dataDir },
    );
    if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.output}`);

    let lastError = '';
    for (let attempt = 1; attempt <= 5; attempt++) {
      const port = await freePort();
      const opts = [
        `-c listen_addresses=127.0.0.1`,
        `-c port=${port}`,
        `-c unix_socket_directories=${shq(dataDir)}`,
        ...(durable ? [] : [`-c fsync=off`, `-c synchronous_commit=off`, `-c full_page_writes=off`]),
        `-c max_connections=${maxConnections}`,
        ...Object.entries(settings).map(([name, value]) => `-c ${name}=${shq(value)}`),
      ].join(' ');
      log(`pg_ctl start on 127.0.0.1:${port}`);
      const start = await run(
        runAs,
        binaries.pgCtl,
        ['start', '-D', dataDir, '-l', logFile, '-w', '-t', String(START_TIMEOUT_S), '-o', opts],
        { cwd: dataDir },
      );
      if (start.code !== 0) {
        lastError = `pg_ctl start failed (exit ${start.code}):\n${start.output}\n--- ${logFile} ---\n${tail(logFile)}`;
        // Most likely the port got taken between probing and binding; try another one.
        if (/could not (bind|create listen socket)|address already in use/i.test(tail(logFile, 50))) continue;
        throw new Error(lastError);
      }

      // pg_ctl -w waits for "ready"; additionally confirm we can open a real session over TCP.
      const deadline = Date.now() + START_TIMEOUT_S * 1000;
      let result = await probe(port, SUPERUSER);
      while (!result.ok && Date.now() < deadline) {
        await sleep(100);
        result = await probe(port, SUPERUSER);
      }
      if (!result.ok) throw new Error(`PostgreSQL started but does not accept connections: ${result.why}\n${tail(logFile)}`);

      const url = `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`;
      log(`ready: ${url}`);
      let stopped = false;
      const stopSync = () => {
        if (stopped) return;
        stopped = true;
        stopPostgresClusterSync(dataDir, { binaries, runAs });
      };
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        if (existsSync(path.join(dataDir, 'postmaster.pid'))) {
          await run(runAs, binaries.pgCtl, ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '30'], { cwd: dataDir });
        }
        removeClusterDir(dataDir);
      };
      // Fault injection (test/e2e/db-outage): take the server down and bring it back on the same
      // port and data directory. `mode` is pg_ctl's: smart, fast (default) or immediate.
      const pgCtl = async (args) => {
        const r = await run(runAs, binaries.pgCtl, [...args, '-D', dataDir, '-w', '-t', String(START_TIMEOUT_S)], { cwd: dataDir });
        if (r.code !== 0) throw new Error(`pg_ctl ${args[0]} failed (exit ${r.code}):\n${r.output}\n--- ${logFile} ---\n${tail(logFile)}`);
      };
      const pauseServer = ({ mode = 'fast' } = {}) => pgCtl(['stop', '-m', mode]);
      const resumeServer = () => pgCtl(['start', '-l', logFile, '-o', opts]);
      const restartServer = ({ mode = 'fast' } = {}) => pgCtl(['restart', '-m', mode, '-l', logFile, '-o', opts]);
      return { url, port, dataDir, stop, stopSync, pauseServer, resumeServer, restartServer };
    }
    throw new Error(lastError || 'could not start PostgreSQL');
  } catch (err) {
    cleanupOnError();
    throw err;
  }
}
