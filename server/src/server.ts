/**
 * Start-up and shutdown, shared by the `coffer-server` command and the tests:
 * open storage, load the seal state, build the app, listen; on stop, finish
 * in-flight requests, zero keys, close the database.
 */
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { CofferCore } from './core.js';
import { buildApp } from './http/app.js';
import { openStorage, type Storage } from './storage/db.js';

export interface RunningServer {
  url: string;
  core: CofferCore;
  storage: Storage;
  server: http.Server;
  stop(): Promise<void>;
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const storage = await openStorage({
    databaseUrl: config.databaseUrl,
    dataDir: config.dev && !config.databaseUrl ? 'memory://' : config.dataDir,
    poolSize: config.dbPoolSize,
  });
  const core = new CofferCore(storage.db, storage.changes, {
    kekCacheTtlMs: config.kekCacheTtlSeconds * 1000,
    kekCacheMaxEntries: config.kekCacheMaxEntries,
    secretCacheMaxEntries: config.secretCacheMaxEntries,
    secretCacheTtlMs: config.secretCacheTtlSeconds * 1000,
    defaultMaxVersions: config.defaultMaxVersions,
  });
  let server: http.Server | undefined;
  try {
    await core.load();
    const app = buildApp(core, logger, { maxRequestBytes: config.maxRequestBytes, maxPageSize: config.maxPageSize });
    server = http.createServer(app);
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(config.port, config.host, () => {
        server!.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    core.close();
    await storage.close();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  let stopping: Promise<void> | undefined;
  const srv = server;
  return {
    url,
    core,
    storage,
    server: srv,
    stop() {
      stopping ??= (async () => {
        await new Promise<void>((resolve) => {
          srv.close(() => resolve());
          srv.closeIdleConnections();
          // In-flight requests get a deadline, then their connections are cut.
          setTimeout(() => srv.closeAllConnections(), 10_000).unref();
        });
        core.close();
        await storage.close();
      })();
      return stopping;
    },
  };
}
