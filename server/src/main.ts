#!/usr/bin/env node
/**
 * coffer-server [--dev] [--host H] [--port P] [--data-dir DIR] [migrate]
 * coffer-server hsm-restore-root --label L --key-file F
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, pkcs11SettingsOf, type Config } from './config.js';
import { CofferError } from './errors.js';
import { restoreRootKey } from './seal/pkcs11-restore-root.js';
import { createLogger } from './log.js';
import { startServer } from './server.js';
import { openStorage, migrate } from './storage/db.js';
import { DataDirLockedError } from './storage/datadir-lock.js';
import { insecureListenProblem, isLoopbackHost } from './ops/tls.js';

const USAGE = `usage: coffer-server [options]            run the server
       coffer-server migrate [options]    bring the database schema up to date and exit
       coffer-server hsm-restore-root --label LABEL --key-file FILE
                                          lost HSM: put a root key the operators kept (one imported
                                          with BYOK) into the NEW token of COFFER_PKCS11_*, as LABEL
                                          (the backup's hsm_key_label); no server may be running

options:
  --dev               try-it-out mode: in-memory store, initialised and unsealed, root token printed
  --host HOST         address to listen on (COFFER_HOST, default 127.0.0.1)
  --port PORT         port to listen on (COFFER_PORT, default 8200)
  --data-dir DIR      embedded store directory (COFFER_DATA_DIR, default ./data)
  -V, --version       print the server version
  -h, --help          show this help

PostgreSQL is used when COFFER_DATABASE_URL is set; otherwise the embedded PGlite store.
All settings: see README.md, "Configuration".`;

/** The package's version (dist/main.js sits one level below package.json, in the repo and in a packed install). */
function serverVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return String(pkg.version);
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        dev: { type: 'boolean' },
        host: { type: 'string' },
        port: { type: 'string' },
        'data-dir': { type: 'string' },
        label: { type: 'string' },
        'key-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${serverVersion()}\n`);
    return 0;
  }
  const command = positionals[0] ?? 'serve';
  if (!['serve', 'migrate', 'hsm-restore-root'].includes(command) || positionals.length > 1) {
    process.stderr.write(`unknown command: ${positionals.join(' ')}\n${USAGE}\n`);
    return 2;
  }

  let config: Config;
  try {
    config = loadConfig(process.env, {
      dev: values.dev,
      host: values.host,
      port: values.port,
      dataDir: values['data-dir'],
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`coffer-server: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);

  try {
    if (command === 'hsm-restore-root') return await hsmRestoreRoot(config, values.label, values['key-file']);
    if (command === 'migrate') {
      const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
      const applied = await migrate(storage.db);
      logger.info({ storage: storage.kind, location: storage.location, applied }, 'schema is up to date');
      await storage.close();
      return 0;
    }
    const insecure = insecureListenProblem(config);
    if (insecure) {
      process.stderr.write(`coffer-server: ${insecure}\n`);
      return 2;
    }
    return await serve(config, logger);
  } catch (err) {
    if (err instanceof ConfigError) {
      // Found at start-up rather than by loadConfig, e.g. an unreadable TLS certificate.
      process.stderr.write(`coffer-server: ${err.message}\n`);
      return 2;
    }
    if (err instanceof DataDirLockedError) {
      logger.fatal(err.message);
      return 1;
    }
    logger.fatal({ err }, 'coffer-server failed to start');
    return 1;
  }
}

/** `hsm-restore-root`: see seal/pkcs11-restore-root.ts. Prints what it did; never the key. */
async function hsmRestoreRoot(config: Config, label: string | undefined, keyFile: string | undefined): Promise<number> {
  const settings = pkcs11SettingsOf(config);
  if (!settings || !label || !keyFile || !/^[A-Za-z0-9._-]{1,64}$/.test(label)) {
    process.stderr.write('coffer-server hsm-restore-root: needs the COFFER_PKCS11_* settings of the new token, --label (the backup\'s hsm_key_label) and --key-file (the 32-byte root key)\n');
    return 2;
  }
  let material: Buffer;
  try {
    material = await readFile(keyFile);
  } catch (err) {
    process.stderr.write(`coffer-server hsm-restore-root: cannot read ${keyFile} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})\n`);
    return 2;
  }
  try {
    const restored = await restoreRootKey(settings, label, material);
    process.stdout.write(`root key "${restored.label}" is on the token (sensitive, not extractable); start the server and restore the backup (it unseals if this is its root key)\n`);
    return 0;
  } catch (err) {
    if (err instanceof CofferError) {
      process.stderr.write(`coffer-server hsm-restore-root: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    material.fill(0);
  }
}

async function serve(config: Config, logger: ReturnType<typeof createLogger>): Promise<number> {
  const running = await startServer(config, logger);
  logger.info({ url: running.url, storage: running.storage.kind, location: running.storage.location }, 'coffer listening');
  if (running.metricsUrl) logger.info({ url: `${running.metricsUrl}/v1/sys/metrics` }, 'metrics listener (no authentication)');
  if (!isLoopbackHost(config.host) && running.url.startsWith('http:')) {
    logger.warn('serving plain HTTP on a non-loopback address (COFFER_ALLOW_INSECURE_HTTP=true): TLS must be terminated in front of Coffer');
  }
  // SIGHUP reloads the TLS certificate and key (renewed certificates need no restart).
  const reload = () => {
    try {
      logger.info(running.reloadTls() ? 'TLS certificate and key reloaded' : 'SIGHUP: nothing to reload (TLS is not configured)');
    } catch (err) {
      logger.error({ problem: (err as Error).message }, 'TLS reload failed; still using the previous certificate');
    }
  };
  process.on('SIGHUP', reload);
  // A promise nobody awaited failed: a bug in background work, but no state is half-changed
  // (unlike an uncaught exception, which still ends the process). Crashing would cost a Shamir
  // server its unsealed state and its clients every request until operators come: log instead.
  process.on('unhandledRejection', (reason) => {
    const err = reason instanceof Error ? { name: reason.name, message: reason.message, stack: reason.stack } : String(reason);
    logger.error({ err }, 'unhandled promise rejection (a bug); the server keeps running');
  });
  const status = running.core.status();
  if (config.dev) {
    const init = await running.core.init(1, 1);
    if (!('shares' in init)) throw new Error('dev mode always uses the Shamir seal');
    await running.core.unseal(init.shares[0]!);
    process.stdout.write(
      [
        '',
        'Coffer is running in DEV mode: in-memory storage, already initialised and unsealed.',
        'Everything is lost when it stops. Never use dev mode for real secrets.',
        '',
        `    export COFFER_ADDR=${running.url}`,
        `    export COFFER_TOKEN=${init.root_token}`,
        '',
        `Unseal share (to try seal/unseal): ${init.shares[0]}`,
        '',
      ].join('\n'),
    );
  } else if (!status.initialized) {
    logger.info('not initialised yet: POST /v1/sys/init (or `coffer operator init`)');
  } else if (status.recovery_seal) {
    if (status.sealed) logger.error({ problem: status.seal_error }, 'sealed: the HSM could not unseal this server (POST /v1/sys/unseal {} retries)');
    else logger.info('unsealed by the HSM (PKCS#11 seal)');
  } else {
    logger.info({ threshold: status.threshold }, 'sealed: unseal with the operators\' shares (POST /v1/sys/unseal)');
  }

  return new Promise<number>((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      running.stop().then(
        () => resolve(0),
        (err) => {
          logger.error({ err }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`coffer-server: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
