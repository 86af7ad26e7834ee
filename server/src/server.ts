/**
 * Start-up and shutdown, shared by the `coffer-server` command and the tests:
 * open storage, load the seal state, build the app, listen; on stop, finish
 * in-flight requests, zero keys, close the database.
 */
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import type { Logger } from 'pino';
import { parseHostPort, type Config } from './config.js';
import { compose } from './app/compose.js';
import type { CofferCore } from './core.js';
import { buildApp } from './http/app.js';
import { openStorage, type Storage } from './storage/db.js';
import { classifyStorageError } from './app/storage-errors.js';
import { closeGracefully, createApiListener, listen, metricsRequestListener, requestTimeouts, urlOf } from './ops/listeners.js';
import { tlsFilesOf } from './ops/tls.js';

export interface RunningServer {
  url: string;
  core: CofferCore;
  storage: Storage;
  server: http.Server;
  /** The unauthenticated metrics listener's URL (COFFER_METRICS_LISTEN), if any. */
  metricsUrl?: string | undefined;
  /** Re-reads the TLS certificate, key and client CA (SIGHUP); false without TLS; throws, keeping the old ones, if unusable. */
  reloadTls(): boolean;
  stop(): Promise<void>;
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const storage = await openStorage({
    databaseUrl: config.databaseUrl,
    dataDir: config.dev && !config.databaseUrl ? 'memory://' : config.dataDir,
    poolSize: config.dbPoolSize,
    // The code and message only: they say what broke (57P01, ECONNREFUSED…) and hold no data.
    onConnectionLost: (where, err) =>
      logger.warn({ where, code: (err as { code?: unknown }).code, problem: err.message }, 'database connection lost; requests get 503 until it is back'),
  });
  // Everything the server is made of is built here (app/compose.ts).
  const { core, audit, metrics } = compose(config, storage, logger);
  const tls = tlsFilesOf(config);
  let api: ReturnType<typeof createApiListener> | undefined;
  let metricsServer: http.Server | undefined;
  let metricsUrl: string | undefined;
  let address: AddressInfo;
  try {
    await core.load();
    // Entries for the changes of requests that never wrote theirs (a crash, a failed append).
    await audit.startRecovery();
    if (core.status().recovery_seal) {
      // PKCS#11 seal: unseal with the HSM now. If it cannot, the server still starts, sealed
      // (503), with the reason in the seal status and the log, and POST /v1/sys/unseal retries.
      await core.autoUnseal().catch((err: unknown) => {
        logger.error({ problem: (err as Error).message }, 'automatic unseal with the HSM failed; staying sealed');
      });
    }
    const app = buildApp(core, logger, {
      maxRequestBytes: config.maxRequestBytes,
      maxPageSize: config.maxPageSize,
      metrics,
      requestLog: config.requestLog,
      clientCertificates: Boolean(tls?.clientCaFile),
      classifyError: classifyStorageError,
    });
    api = createApiListener(app, tls, requestTimeouts(config.requestTimeoutSeconds * 1000));
    // Longer than the idle timeout of common load balancers (60 s), so that they close first.
    api.server.keepAliveTimeout = 65_000;
    address = await listen(api.server, config.port, config.host);
    if (config.metricsListen) {
      const at = parseHostPort(config.metricsListen)!;
      metricsServer = http.createServer(metricsRequestListener(metrics));
      metricsUrl = urlOf('http', await listen(metricsServer, at.port, at.host));
    }
  } catch (err) {
    api?.server.close();
    metricsServer?.close();
    await core.close();
    await storage.close();
    throw err;
  }
  const url = urlOf(api.scheme, address);
  let stopping: Promise<void> | undefined;
  const srv = api.server;
  const shutdownDeadlineMs = config.shutdownTimeoutSeconds * 1000;
  return {
    url,
    core,
    storage,
    server: srv,
    metricsUrl,
    reloadTls: api.reloadTls,
    stop() {
      stopping ??= (async () => {
        // In-flight requests get a deadline (COFFER_SHUTDOWN_TIMEOUT_SECONDS), then their connections are cut.
        await closeGracefully(srv, shutdownDeadlineMs);
        if (metricsServer) await closeGracefully(metricsServer, 0);
        // Flushes the audit log (entries of the requests just finished), then zeroes the keys.
        await core.close();
        await storage.close();
      })();
      return stopping;
    },
  };
}
