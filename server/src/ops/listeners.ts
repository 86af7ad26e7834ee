/**
 * The sockets around the app: the API listener (HTTP, or HTTPS with a
 * certificate that can be swapped while running), the optional metrics
 * listener, and draining a listener at shutdown.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { RequestListener, ServerOptions } from 'node:http';
import type { Duplex } from 'node:stream';
import type { CofferMetrics } from './metrics.js';
import { readTlsContext, type TlsFiles } from './tls.js';
import { answeredEarly } from '../http/edge.js';

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

/**
 * How long a client may take to send a request: all of it within `requestTimeoutMs`
 * (a slow or endless body is cut, 408), the headers within 10 s of their first byte.
 */
export function requestTimeouts(requestTimeoutMs: number): ServerOptions {
  return {
    requestTimeout: requestTimeoutMs,
    headersTimeout: Math.min(requestTimeoutMs, 10_000),
    // Node looks for expired requests on this interval (30 s by default, which would let a
    // request run up to twice its timeout): a deadline is now enforced at most 1 s late.
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(requestTimeoutMs / 4))),
  };
}

export function createApiListener(app: RequestListener, tls: TlsFiles | undefined, options: ServerOptions = {}): ApiListener {
  if (!tls) {
    const server = http.createServer(options, app);
    answerProtocolErrors(server);
    return { server, scheme: 'http', reloadTls: () => false };
  }
  const server = https.createServer(
    {
      ...options,
      ...readTlsContext(tls),
      minVersion: 'TLSv1.2',
      // With a client CA, ask for a certificate but let token callers in without one:
      // the app sees whether the certificate verified (http/client-cert.ts).
      ...(tls.clientCaFile ? { requestCert: true, rejectUnauthorized: false } : {}),
    },
    app,
  );
  answerProtocolErrors(server);
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

const REASONS: Record<number, string> = { 400: 'Bad Request', 405: 'Method Not Allowed', 408: 'Request Timeout', 417: 'Expectation Failed', 431: 'Request Header Fields Too Large' };

/** A whole HTTP/1.1 response with the JSON error envelope, for a socket the app never got. */
function rawJsonError(status: number, code: string, message: string, head: boolean): string {
  const body = JSON.stringify({ error: { code, message } });
  return (
    `HTTP/1.1 ${status} ${REASONS[status]}\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n` +
    // The answer to a HEAD request has no body (a client would read one as the next response).
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${head ? '' : body}`
  );
}

/**
 * What Node's HTTP layer refuses before the app sees it (a malformed request, an unknown
 * method, headers over 16 KiB, the request timeout, CONNECT, an Expect other than
 * 100-continue) is answered with the same JSON error envelope as everything else, then
 * the connection is closed. Node would send a bare status line, or just hang up.
 */
function answerProtocolErrors(server: http.Server): void {
  const refuse = (socket: Duplex, status: number, code: string, message: string, head = false) => {
    socket.end(rawJsonError(status, code, message, head), () => socket.destroy());
  };
  server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex) => {
    // Only when no response has started on this connection: anything else would corrupt it.
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean; req?: { method?: string } } })._httpMessage;
    if (!socket.writable || inFlight?.headersSent || answeredEarly.has(socket) || err.code === 'ECONNRESET') return void socket.destroy();
    const head = inFlight?.req?.method === 'HEAD' || err.rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return refuse(socket, 408, 'request_timeout', 'the request was not received in time', head);
    if (err.code === 'HPE_HEADER_OVERFLOW') return refuse(socket, 431, 'invalid_request', 'request headers are too large', head);
    if (err.code === 'HPE_INVALID_METHOD') return refuse(socket, 405, 'method_not_allowed', 'unknown HTTP method');
    refuse(socket, 400, 'invalid_request', 'malformed HTTP request', head);
  });
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => refuse(socket, 405, 'method_not_allowed', 'CONNECT is not supported'));
  server.on('checkExpectation', (_req: http.IncomingMessage, res: http.ServerResponse) =>
    jsonError(res, 417, 'invalid_request', 'only "Expect: 100-continue" is supported', { Connection: 'close' }),
  );
}

const jsonError = (res: http.ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) => {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
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
