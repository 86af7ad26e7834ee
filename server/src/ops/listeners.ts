/**
 * The sockets around the app: the API listener (HTTP, or HTTPS with a
 * certificate that can be swapped while running), the optional metrics
 * listener, and draining a listener at shutdown.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { RequestListener } from 'node:http';
import type { CofferMetrics } from './metrics.js';
import { readTlsContext, type TlsFiles } from './tls.js';

export interface ApiListener {
  server: http.Server;
  scheme: 'http' | 'https';
  /**
   * Re-reads the certificate, key and client CA and uses them for new
   * connections; open connections keep theirs. Throws (ConfigError) and keeps
   * the current certificate when the files are unusable. False without TLS.
   */
  reloadTls(): boolean;
}

export function createApiListener(app: RequestListener, tls: TlsFiles | undefined): ApiListener {
  if (!tls) return { server: http.createServer(app), scheme: 'http', reloadTls: () => false };
  const server = https.createServer(
    {
      ...readTlsContext(tls),
      minVersion: 'TLSv1.2',
      // With a client CA, ask for a certificate but let token callers in without one:
      // the app sees whether the certificate verified (http/client-cert.ts).
      ...(tls.clientCaFile ? { requestCert: true, rejectUnauthorized: false } : {}),
    },
    app,
  );
  return {
    server,
    scheme: 'https',
    reloadTls() {
      server.setSecureContext(readTlsContext(tls));
      return true;
    },
  };
}

export function listen(server: http.Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

export function urlOf(scheme: string, address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}

/**
 * Stops accepting connections and waits for in-flight requests, at most
 * `deadlineMs`; then the remaining connections are cut. Keep-alive clients
 * are told (`Connection: close`) and their idle connections closed, so they
 * reconnect elsewhere instead of sending more requests to a server going away.
 */
export function closeGracefully(server: http.Server, deadlineMs: number): Promise<void> {
  return new Promise((resolve) => {
    server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    });
    // A connection whose in-flight response just finished becomes idle: close it too.
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    const cut = setTimeout(() => server.closeAllConnections(), deadlineMs);
    server.close(() => {
      clearInterval(sweep);
      clearTimeout(cut);
      resolve();
    });
    server.closeIdleConnections();
  });
}

const jsonError = (res: http.ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(JSON.stringify({ error: { code, message } }));
};

/**
 * The unauthenticated metrics listener (COFFER_METRICS_LISTEN): only
 * GET /v1/sys/metrics, for a Prometheus that has no Coffer token. Metrics
 * hold counts and states, never names or values; it is plain HTTP.
 */
export function metricsRequestListener(metrics: CofferMetrics): RequestListener {
  return (req, res) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path !== '/v1/sys/metrics') return jsonError(res, 404, 'not_found', 'only GET /v1/sys/metrics is served on this listener');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return jsonError(res, 405, 'method_not_allowed', 'method not allowed here; use GET', { Allow: 'GET, HEAD' });
    }
    metrics.render().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => jsonError(res, 500, 'internal', 'metrics could not be collected'),
    );
  };
}
