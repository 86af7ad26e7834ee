#!/usr/bin/env node
/**
 * Peak RSS of a server process restoring a large backup (POST /v1/sys/restore),
 * for one or more server builds: `node scripts/restore-rss.mjs [--mb 200] MAIN_JS...`
 * [--heap MB] (default: this checkout's server/dist/main.js). On a throwaway PostgreSQL, so
 * the database's memory is not the server's. Bounded: one fill, one backup,
 * one restore per build.
 */
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { startPostgresCluster } from './lib/pg-cluster.mjs';
import { freePort } from './lib/port.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const mbAt = args.indexOf('--mb');
const targetMb = mbAt >= 0 ? Number(args.splice(mbAt, 2)[1]) : 200;
// --heap MB: the restoring servers' V8 old-space limit (a restore that holds the upload runs out of it).
const heapAt = args.indexOf('--heap');
const heapMb = heapAt >= 0 ? Number(args.splice(heapAt, 2)[1]) : null;
const mains = args.length > 0 ? args.map((a) => path.resolve(a)) : [path.join(root, 'server/dist/main.js')];
const pg = createRequire(path.join(root, 'server/package.json'))('pg');

const work = mkdtempSync(path.join(tmpdir(), 'coffer-rss-'));
const cluster = await startPostgresCluster();
const children = [];
const cleanup = async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
};

async function database(name) {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(cluster.url);
  url.pathname = `/${name}`;
  return url.toString();
}

async function startServer(main, db, nodeArgs = []) {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeArgs, main], {
    env: { ...process.env, COFFER_DATABASE_URL: db, COFFER_PORT: String(port), COFFER_HOST: '127.0.0.1', COFFER_LOG_LEVEL: 'warn', COFFER_KEK_RUN_JOBS: 'false', COFFER_MAX_REQUEST_BYTES: String(4 * 1024 * 1024), COFFER_REQUEST_TIMEOUT_SECONDS: '3600' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (i > 600) throw new Error('server did not start');
    try {
      if ((await fetch(`${url}/v1/sys/seal-status`)).status < 500) break;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url };
}

// NaN once the process is gone (or a zombie: no memory lines left).
const procStatus = (pid, field) => {
  try {
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
};
const hwmKb = (pid) => procStatus(pid, 'VmHWM');
const rssKb = (pid) => procStatus(pid, 'VmRSS');

async function call(url, method, p, body, token) {
  const res = await fetch(url + p, { method, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

try {
  // The source vault: large values (most of the bytes) and many small secrets (many rows).
  const a = await startServer(mains[mains.length - 1], await database('src'));
  const init = await call(a.url, 'POST', '/v1/sys/init', { shares: 1, threshold: 1 });
  await call(a.url, 'POST', '/v1/sys/unseal', { share: init.shares[0] });
  const token = init.root_token;
  await call(a.url, 'POST', '/v1/namespaces', { name: 'bulk' }, token);
  const big = 'x'.repeat(1024 * 1024);
  const small = 'y'.repeat(1000);
  const bigCount = Math.round((targetMb * 0.7) / 2.8); // ~2.8 MB of backup per 1 MB value (hex bytea of a base64-ish ciphertext)
  const smallCount = Math.round((targetMb * 0.3 * 1024) / 3.2);
  const started = Date.now();
  for (let i = 0; i < bigCount; i += 2) await Promise.all([i, i + 1].filter((n) => n < bigCount).map((n) => call(a.url, 'PUT', `/v1/secrets/bulk/big${n}`, { data: { v: big } }, token)));
  for (let i = 0; i < smallCount; i += 16) await Promise.all(Array.from({ length: Math.min(16, smallCount - i) }, (_, j) => call(a.url, 'PUT', `/v1/secrets/bulk/s${i + j}`, { data: { v: small } }, token)));
  const file = path.join(work, 'backup.ndjson');
  const res = await fetch(`${a.url}/v1/sys/backup`, { headers: { authorization: `Bearer ${token}` } });
  await pipeline(res.body, createWriteStream(file));
  const size = statSync(file).size;
  console.log(`backup: ${(size / 1024 / 1024).toFixed(1)} MiB, ${bigCount} x 1 MiB + ${smallCount} x 1 KB secrets (filled in ${((Date.now() - started) / 1000).toFixed(0)} s)`);
  a.child.kill('SIGTERM');

  let n = 0;
  for (const main of mains) {
    const b = await startServer(main, await database(`dst${n++}`), heapMb ? [`--max-old-space-size=${heapMb}`] : []);
    const before = rssKb(b.child.pid);
    const t0 = Date.now();
    const status = await new Promise((resolve, reject) => {
      const req = request(`${b.url}/v1/sys/restore`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' } }, (r) => {
        let text = '';
        r.on('data', (c) => (text += c));
        r.on('end', () => resolve(`${r.statusCode} ${text.slice(0, 200)}`));
      });
      req.on('error', (err) => resolve(`failed: ${err.message} (server exit ${b.child.exitCode ?? b.child.signalCode ?? 'none'})`));
      req.write(`${JSON.stringify({ coffer_restore: { shares: init.shares } })}\n`);
      createReadStream(file).pipe(req);
    });
    const seconds = (Date.now() - t0) / 1000;
    const hwm = hwmKb(b.child.pid);
    const peak = Number.isNaN(hwm) ? '(the server died)' : `${(hwm / 1024).toFixed(0)} MiB`;
    console.log(`${main}${heapMb ? ` (--max-old-space-size=${heapMb})` : ''}\n  restore: ${status.slice(0, 80)}\n  ${seconds.toFixed(1)} s; RSS before ${(before / 1024).toFixed(0)} MiB, peak (VmHWM) ${peak}`);
    b.child.kill('SIGTERM');
  }
} finally {
  await cleanup();
}
