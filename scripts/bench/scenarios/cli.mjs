// (d1)/(d2): the CLI's `coffer run` (whole process, wall time) and the SDK's bulk fetch, against
// Coffer on PGlite with 50 secrets in one folder (seeded through the HTTP API).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BenchError, root } from '../common.mjs';
import { percentile } from '../load.mjs';
import { CLI_AIM_MS, CLI_SECRETS } from '../options.mjs';
import { api, startCoffer } from '../servers.mjs';
import { removeTempDir, stopChild, trackTempDir } from '../session.mjs';

function timeProcess(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new BenchError(`${path.basename(args[0] ?? cmd)} exited ${code}: ${err.slice(0, 500)}`));
      else resolve(ms);
    });
  });
}

function summary(samples) {
  const sorted = [...samples].sort((x, y) => x - y);
  return { runs: sorted.length, p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), min: sorted[0], max: sorted[sorted.length - 1] };
}

export async function benchCli(opts, wanted) {
  const results = {};
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-cli-'));
  const home = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-cli-home-'));
  trackTempDir(dataDir);
  trackTempDir(home);
  try {
    const server = await startCoffer('pglite-cli', { COFFER_DATA_DIR: dataDir }, opts);
    try {
      for (let i = 0; i < CLI_SECRETS; i++) {
        await api(server.base, 'PUT', `/v1/secrets/bench/run/service-${String(i).padStart(2, '0')}/key`, {
          token: server.token,
          body: { data: { value: randomBytes(24).toString('base64url') } },
        });
      }
      const runs = opts.quick ? 8 : 30;
      if (wanted('d1')) {
        const cliMain = path.join(root, 'cli', 'bin', 'coffer.js');
        const env = { PATH: process.env.PATH ?? '', HOME: home, COFFER_ADDR: server.base, COFFER_TOKEN: server.token };
        const args = [cliMain, '-n', 'bench', 'run', '--prefix', 'run/', '--', 'true'];
        // Check once that the secrets really arrive (and warm the page cache).
        const check = await new Promise((resolve) => {
          const c = spawn(process.execPath, [cliMain, '-n', 'bench', 'run', '--prefix', 'run/', '--', 'sh', '-c', 'env | grep -c "^SERVICE_"'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
          let o = '';
          c.stdout.on('data', (d) => (o += d));
          c.on('close', () => resolve(o.trim()));
        });
        if (check !== String(CLI_SECRETS)) throw new BenchError(`coffer run saw ${check} SERVICE_* variables, expected ${CLI_SECRETS}`);
        const cli = [];
        const floor = [];
        for (let i = 0; i < runs; i++) {
          cli.push(await timeProcess(process.execPath, args, env));
          floor.push(await timeProcess(process.execPath, ['-e', '0'], env));
        }
        results.d1 = { ...summary(cli), node_floor: summary(floor), secrets: CLI_SECRETS, aimMs: CLI_AIM_MS };
      }
      if (wanted('d2')) {
        const { CofferClient } = await import(pathToFileURL(path.join(root, 'sdk', 'dist', 'index.js')).href);
        const client = new CofferClient({ address: server.base, token: server.token });
        for (let i = 0; i < 20; i++) await client.secrets.bulk('bench', 'run/');
        const n = opts.quick ? 100 : 500;
        const samples = [];
        for (let i = 0; i < n; i++) {
          const t0 = process.hrtime.bigint();
          const { secrets } = await client.secrets.bulk('bench', 'run/');
          samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
          if (secrets.length !== CLI_SECRETS) throw new BenchError(`bulk fetch returned ${secrets.length} secrets, expected ${CLI_SECRETS}`);
        }
        results.d2 = { ...summary(samples), secrets: CLI_SECRETS };
      }
    } finally {
      await stopChild(server.child);
    }
  } finally {
    removeTempDir(dataDir);
    removeTempDir(home);
  }
  return results;
}

