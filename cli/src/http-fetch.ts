/**
 * The subset of fetch the SDK uses, over node:http/https.
 *
 * Why: in Node 20 the first use of the global fetch loads undici (~1 MB of
 * JavaScript), which measured ~70-90 ms of a `coffer run -- true` that takes
 * ~190 ms in total; node:http is already in the binary's snapshot. The CLI is a
 * short-lived process making a handful of requests, so it gains nothing from
 * undici's pooling. The SDK itself keeps the global fetch (library users
 * already have undici loaded, and the option stays open for them too).
 *
 * Only what Transport needs is implemented: method, headers, a string or ReadableStream body, an
 * AbortSignal, and a response with status, statusText, ok, headers.get() and
 * text() (or a streamed `body`, for backups). Redirects are never followed (the SDK asks for redirect: 'error'; a
 * 3xx is returned as a non-ok response, which the SDK reports as an error).
 * Network failures are thrown as TypeError('fetch failed', { cause }) like
 * fetch does, so the SDK's error messages stay the same.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, RequestOptions } from 'node:http';
import type { FetchFn } from '@coffer/sdk';

interface MiniResponse {
  status: number;
  statusText: string;
  ok: boolean;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  /** The body as a stream, for large downloads; take it before text() (which then holds only what came before). */
  readonly body: ReadableStream<Uint8Array>;
}

/** A client certificate to present on HTTPS connections (`coffer login cert`). */
export interface ClientCertificate {
  cert: string;
  key: string;
}

export const nodeFetch: FetchFn = createNodeFetch();

export function createNodeFetch(clientCert?: ClientCertificate): FetchFn {
  return (async (input: string | URL | Request, init: RequestInit = {}): Promise<MiniResponse> => {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  const body = typeof init.body === 'string' ? Buffer.from(init.body, 'utf8') : undefined;
  // A file upload (restore): sent chunked as it is read, never held whole.
  const streamBody = init.body instanceof ReadableStream ? (init.body as ReadableStream<Uint8Array>) : undefined;
  const headers: Record<string, string> = { ...(init.headers as Record<string, string> | undefined) };
  if (body) headers['Content-Length'] = String(body.length);
  const signal = init.signal ?? undefined;
  if (signal?.aborted) throw signal.reason;

  const options: RequestOptions & { ca?: string; cert?: string; key?: string; servername?: string; rejectUnauthorized?: boolean } = {
    method: init.method ?? 'GET',
    headers,
    signal: signal as AbortSignal | undefined,
  };
  if (url.protocol === 'https:') {
    const ca = customCa();
    if (ca !== undefined) options.ca = ca;
    if (clientCert) Object.assign(options, clientCert);
    // As VAULT_TLS_SERVER_NAME: sent as SNI and checked against the certificate instead of the address's host.
    const serverName = process.env.COFFER_TLS_SERVER_NAME;
    if (serverName) options.servername = serverName;
    if (skipVerify()) options.rejectUnauthorized = false;
  }
  return new Promise<MiniResponse>((resolve, reject) => {
    const req = request(url, options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      // Set once `body` is taken (a backup download): chunks go to the stream instead, with back-pressure.
      let sink: ReadableStreamDefaultController<Uint8Array> | null = null;
      let ended = false;
      // The body is read eagerly: the SDK always reads it, and the timeout must cover it.
      const text = new Promise<string>((resolveText, rejectText) => {
        res.on('data', (c: Buffer) => {
          if (!sink) return void chunks.push(c);
          sink.enqueue(new Uint8Array(c));
          if ((sink.desiredSize ?? 1) <= 0) res.pause();
        });
        res.on('end', () => {
          ended = true;
          sink?.close();
          resolveText(Buffer.concat(chunks).toString('utf8'));
        });
        const fail = (err: Error) => {
          const reason = failed(err, signal);
          sink?.error(reason);
          rejectText(reason);
        };
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('aborted')));
      });
      text.catch(() => {}); // surfaced when text() is awaited
      let body: ReadableStream<Uint8Array> | undefined;
      const stream = () =>
        (body ??= new ReadableStream<Uint8Array>({
          start(controller) {
            sink = controller;
            for (const c of chunks.splice(0)) controller.enqueue(new Uint8Array(c));
            if (ended) controller.close();
          },
          pull() {
            res.resume();
          },
        }));
      const status = res.statusCode ?? 0;
      resolve({
        status,
        statusText: res.statusMessage ?? '',
        ok: status >= 200 && status < 300,
        headers: {
          get(name: string) {
            const v = res.headers[name.toLowerCase()];
            return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
          },
        },
        text: () => text,
        get body() {
          return stream();
        },
      });
    });
    req.on('error', (err) => reject(failed(err, signal)));
    if (!streamBody) return void req.end(body);
    void (async () => {
      const reader = streamBody.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (!req.write(value)) await new Promise<void>((resolveDrain) => req.once('drain', resolveDrain).once('close', resolveDrain));
          if (req.destroyed) break;
        }
        req.end();
      } catch (err) {
        // The file could not be read: the server sees a cut upload and changes nothing.
        req.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    })();
  });
  }) as unknown as FetchFn;
}

/** fetch's error shapes: the signal's reason when aborted (TimeoutError), else TypeError with the cause. */
function failed(err: Error, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  return new TypeError('fetch failed', { cause: err });
}

let caCache: { file: string; pem: string } | undefined;

/**
 * COFFER_CACERT: a PEM bundle to trust instead of the system roots, for a
 * server whose certificate comes from a private CA (as VAULT_CACERT).
 * NODE_EXTRA_CA_CERTS (added to the roots) works as well.
 */
function customCa(): string | undefined {
  const file = process.env.COFFER_CACERT;
  if (!file) return undefined;
  if (caCache?.file !== file) {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (err) {
      throw new TypeError('fetch failed', { cause: Object.assign(new Error(`cannot read COFFER_CACERT ${file}`), { code: (err as NodeJS.ErrnoException).code }) });
    }
    caCache = { file, pem };
  }
  return caCache.pem;
}

let skipWarned = false;

/**
 * COFFER_SKIP_VERIFY (as VAULT_SKIP_VERIFY): the server's certificate is not
 * checked at all. For a test setup only, so it says so on every use (once per run).
 */
function skipVerify(): boolean {
  if (!/^(1|true|yes)$/i.test(process.env.COFFER_SKIP_VERIFY ?? '')) return false;
  if (!skipWarned) {
    skipWarned = true;
    process.stderr.write(
      'WARNING: COFFER_SKIP_VERIFY is set: the server\'s TLS certificate is NOT verified. Anyone on the network path can\n' +
        'read and change this traffic, your token and secrets included. Use COFFER_CACERT for a private CA instead.\n',
    );
  }
  return true;
}
