#!/usr/bin/env node
// Throwaway PostgreSQL cluster for tests and CI, from the command line (the implementation is
// scripts/lib/pg-cluster.mjs; dependency-free, so CI runs this before `npm ci`):
//
//   eval "$(node scripts/pg-cluster.mjs start)"     # exports COFFER_TEST_DATABASE_URL, COFFER_PG_CLUSTER_DIR
//   node scripts/pg-cluster.mjs stop "$COFFER_PG_CLUSTER_DIR"
//   node scripts/pg-cluster.mjs find                # prints the directory holding initdb/pg_ctl

import { existsSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DIR_PREFIX, findPostgresBinaries, shq, startPostgresCluster, stopPostgresClusterSync } from './lib/pg-cluster.mjs';

// Importers of this file (before the library moved) keep working.
export { findPostgresBinaries, startPostgresCluster, stopPostgresClusterSync } from './lib/pg-cluster.mjs';

function isMain() {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function main(argv) {
  const [cmd, arg] = argv;
  const log = (m) => process.stderr.write(`[pg-cluster] ${m}\n`);
  switch (cmd) {
    case 'start': {
      // If interrupted while starting, do not leave a half-started cluster behind.
      let startingDir = null;
      const abort = (sig) => {
        if (startingDir) stopPostgresClusterSync(startingDir);
        process.exit(128 + (os.constants.signals[sig] ?? 1));
      };
      process.once('SIGINT', abort).once('SIGTERM', abort).once('SIGHUP', abort);
      const cluster = await startPostgresCluster({ log, onDataDir: (d) => (startingDir = d) });
      startingDir = null;
      // Shell-evaluable output on stdout only; diagnostics go to stderr.
      process.stdout.write(`export COFFER_TEST_DATABASE_URL=${shq(cluster.url)}\n`);
      process.stdout.write(`export COFFER_PG_CLUSTER_DIR=${shq(cluster.dataDir)}\n`);
      return 0;
    }
    case 'stop': {
      if (!arg) {
        log('usage: pg-cluster.mjs stop <dir>');
        return 2;
      }
      const dir = path.resolve(arg);
      if (!existsSync(dir)) return 0;
      if (!path.basename(dir).startsWith(DIR_PREFIX) && !existsSync(path.join(dir, 'PG_VERSION'))) {
        log(`refusing to touch ${dir}: not a cluster directory`);
        return 2;
      }
      stopPostgresClusterSync(dir);
      log(`stopped and removed ${dir}`);
      return 0;
    }
    case 'find': {
      const b = findPostgresBinaries();
      if (!b) {
        log('PostgreSQL server binaries not found');
        return 1;
      }
      process.stdout.write(`${b.binDir}\n`);
      return 0;
    }
    default:
      log('usage: pg-cluster.mjs start | stop <dir> | find');
      return 2;
  }
}

if (isMain()) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`[pg-cluster] error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
