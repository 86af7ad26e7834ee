/**
 * HTTP transport: one JSON request with a per-attempt timeout, retried with
 * exponential backoff and full jitter when that is safe, within a total time
 * budget (as the AWS SDKs' retry modes): by default long enough to ride out a
 * failover — a PostgreSQL restart (Coffer answers 503 with Retry-After), a
 * server killed behind a load balancer, a server restarted on its port
 * (connections refused until it listens, then 503 sealed until unsealed).
 *
 * What is retried:
 * - idempotent requests (GET, and the calls marked so) on network errors
 *   (refused, reset, an empty reply), timeouts, 429, 502, 503 and 504;
 * - any other request only when it provably never reached a server: the
 *   connection was refused, or DNS answered "try again".
 * Not retried: TLS and certificate failures, an unknown host, a 503 `sealed`
 * beyond two retries (operators unseal; waiting 30 s for them helps no one). A reset, an empty
 *   reply, a timeout or a 503 does not say whether a write took effect:
 *   repeating a PUT could add a second version, a cas write would fail with a
 *   misleading cas_mismatch, a login would count twice.
 */
import { CofferError, invalidArgument } from './errors.js';

export type FetchFn = typeof globalThis.fetch;
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type Query = Record<string, string | number | boolean | undefined>;

export interface TransportOptions {
  address: string;
  token?: string | undefined;
  timeoutMs: number;
  /** Most extra attempts. */
  retries: number;
  /** No retry starts later than this after the first attempt began (0: never retry); a Retry-After beyond it is not waited for. */
  retryBudgetMs: number;
  /** Base of the exponential backoff. */
  retryBaseDelayMs: number;
  /** Upper bound of one backoff delay (a Retry-After is waited for as long as the budget allows). */
  retryMaxDelayMs: number;
  fetch: FetchFn;
  userAgent: string;
  /** Called before each retry's wait (e.g. to tell a user why a command is slow). */
  onRetry?: (retry: RetryInfo) => void;
}

/** What `onRetry` is told: the failed attempt's error and the wait before the next one. */
export interface RetryInfo {
  /** The attempt that failed (1 = the first). */
  attempt: number;
  error: CofferError;
  delayMs: number;
  /** What is left of the retry budget after this wait. */
  remainingMs: number;
}

export interface ApiRequest {
  method: Method;
  /** Path below the address, starting with '/'; built from validated names only. */
  path: string;
  query?: Query;
  body?: unknown;
  /** Safe to repeat: defaults to true for GET only. */
  idempotent?: boolean;
  /** Non-2xx statuses whose body is a normal answer (health's 503/501). */
  acceptStatus?: readonly number[];
  /** Send no token (logins: a stale token must not decide how a login is audited). */
  anonymous?: boolean;
}

/** Characters a header value may hold; checked so fetch never builds an error message from the token. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

/** A fallback code for a response that is not in Coffer's error format (a proxy, a load balancer). */
const FALLBACK_CODES: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  429: 'rate_limited',
  503: 'unavailable',
};

export class Transport {
  private readonly base: string;
  private readonly origin: string;
  private token: string | undefined;

  constructor(private readonly options: TransportOptions) {
    let url: URL;
    try {
      url = new URL(options.address);
    } catch {
      throw invalidArgument('the Coffer address must be an http:// or https:// URL');
    }
    // The address is not echoed: it could carry credentials, which fetch refuses anyway.
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.search || url.hash) {
      throw invalidArgument('the Coffer address must be an http:// or https:// URL without credentials, query or fragment');
    }
    // A NaN or fractional retry count would otherwise never stop retrying.
    if (!Number.isInteger(options.retries) || options.retries < 0) throw invalidArgument('retries must be an integer >= 0');
    if (!(options.retryBudgetMs >= 0) || !Number.isFinite(options.retryBudgetMs)) throw invalidArgument('retryBudgetMs must be a number >= 0');
    if (!(options.timeoutMs > 0) || !Number.isFinite(options.timeoutMs)) throw invalidArgument('timeoutMs must be a positive number');
    this.origin = url.origin;
    this.base = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    this.setToken(options.token);
  }

  setToken(token: string | undefined): void {
    if (token !== undefined && !HEADER_SAFE.test(token)) {
      throw invalidArgument('the token holds characters that cannot be sent in an HTTP header (whitespace or control characters?)');
    }
    this.token = token === '' ? undefined : token;
  }

  currentToken(): string | undefined {
    return this.token;
  }

  async request<T>(req: ApiRequest): Promise<T> {
    const idempotent = req.idempotent ?? req.method === 'GET';
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(req);
      } catch (err) {
        if (!(err instanceof CofferError) || attempt > this.options.retries || !isRetryable(err, idempotent, attempt)) throw err;
        const remaining = this.options.retryBudgetMs - (Date.now() - started);
        const delay = this.backoff(attempt, err instanceof RetryableHttpError ? err.retryAfterMs : undefined);
        if (remaining <= 0 || delay > remaining) throw err;
        this.options.onRetry?.({ attempt, error: err, delayMs: delay, remainingMs: remaining - delay });
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /**
   * One attempt whose body is a file, not JSON: `upload` is sent as is with
   * `contentType`, and a 2xx response is returned unread (a backup streams for
   * longer than any request timeout: the timeout covers only the wait for the
   * response's headers). Errors are raised as `request` raises them.
   * A streamed `upload` (a large file) has no timeout: the server answers
   * only once it has read and processed all of it.
   */
  async raw(req: { method: Method; path: string; upload?: string | ReadableStream<Uint8Array>; contentType?: string; anonymous?: boolean }): Promise<Response> {
    const headers: Record<string, string> = { 'User-Agent': this.options.userAgent };
    if (this.token !== undefined && !req.anonymous) headers.Authorization = `Bearer ${this.token}`;
    if (req.contentType) headers['Content-Type'] = req.contentType;
    const abort = new AbortController();
    const streamed = req.upload !== undefined && typeof req.upload !== 'string';
    const timer = streamed ? undefined : setTimeout(() => abort.abort(new DOMException('timeout', 'TimeoutError')), this.options.timeoutMs);
    let response: Response;
    try {
      // Node's fetch sends a stream body only with duplex 'half' (not yet in the DOM RequestInit type).
      const init: RequestInit & { duplex?: 'half' } = { method: req.method, headers, body: req.upload, redirect: 'error', signal: abort.signal };
      if (streamed) init.duplex = 'half';
      response = await this.options.fetch(new URL(this.base + req.path), init);
    } catch (err) {
      throw this.networkError(err);
    } finally {
      clearTimeout(timer);
    }
    if (response.ok) return response;
    let text = '';
    try {
      text = await response.text();
    } catch {
      // The status line is enough to report.
    }
    throw errorFromResponse(response, text, response.headers.get('x-request-id') ?? undefined);
  }

  private async once<T>(req: ApiRequest): Promise<T> {
    const url = new URL(this.base + req.path);
    for (const [key, value] of Object.entries(req.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': this.options.userAgent };
    if (this.token !== undefined && !req.anonymous) headers.Authorization = `Bearer ${this.token}`;
    if (req.body !== undefined) headers['Content-Type'] = 'application/json';

    let response: Response;
    let text: string;
    try {
      response = await this.options.fetch(url, {
        method: req.method,
        headers,
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        redirect: 'error', // a redirect could carry the token to another host
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      // Read inside the try: the timeout and network failures also cover the body.
      text = await response.text();
    } catch (err) {
      throw this.networkError(err);
    }

    const requestId = response.headers.get('x-request-id') ?? undefined;
    if (response.ok || req.acceptStatus?.includes(response.status)) {
      if (response.status === 204 || text === '') return undefined as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new CofferError(response.status, 'invalid_response', `the server at ${this.origin} answered with something other than JSON`, requestId);
      }
    }
    throw errorFromResponse(response, text, requestId);
  }

  private networkError(err: unknown): CofferError {
    // Duck-typed, not instanceof: the DOMException of a timeout may come from another realm.
    const { name, cause } = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; cause?: { code?: unknown; message?: unknown } };
    if (name === 'TimeoutError' || name === 'AbortError') {
      return new CofferError(0, 'timeout', `no answer from Coffer at ${this.origin} within ${this.options.timeoutMs} ms`, undefined, { cause: err });
    }
    // undici puts the reason in the cause: a code (ECONNREFUSED, ENOTFOUND, ...) or a short message.
    const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '';
    const reason = detail ? `: ${detail}` : '';
    const message = `cannot reach Coffer at ${this.origin}${reason}`;
    const code = typeof cause?.code === 'string' ? cause.code : undefined;
    if (code !== undefined && NOT_SENT.has(code)) return new NotSentError(0, 'unavailable', message, undefined, { cause: err });
    if (code !== undefined && PERMANENT.test(code)) return new PermanentNetworkError(0, 'unavailable', message, undefined, { cause: err });
    return new CofferError(0, 'unavailable', message, undefined, { cause: err });
  }

  /**
   * Full jitter (a random delay up to the exponential bound) spreads out
   * clients that failed together; a Retry-After is the server's own word.
   */
  private backoff(attempt: number, retryAfterMs: number | undefined): number {
    const { retryBaseDelayMs, retryMaxDelayMs } = this.options;
    if (retryAfterMs !== undefined) return retryAfterMs;
    return Math.random() * Math.min(retryMaxDelayMs, retryBaseDelayMs * 2 ** (attempt - 1));
  }
}

/** A 429/503 answer, with the server's Retry-After when it sent one. */
class RetryableHttpError extends CofferError {}

/** A request that provably never reached a server (nothing listened, or the name did not resolve): safe to repeat, even a write. */
class NotSentError extends CofferError {}

/** A network failure that waiting does not cure (a certificate that does not verify, a name that does not exist). */
class PermanentNetworkError extends CofferError {}

/** Socket errors raised before a single byte of the request could be sent (nothing listens; DNS said "try again"). */
const NOT_SENT = new Set(['ECONNREFUSED', 'EAI_AGAIN']);
/** TLS and certificate failures, an unknown host name: retrying would only delay the error. */
const PERMANENT = /CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO_|^ENOTFOUND$/;
/**
 * A sealed server waits for its operators (Shamir), or unseals itself before it
 * listens (PKCS#11; behind a load balancer it gets no traffic until ready): a
 * couple of retries, not the whole budget.
 */
const SEALED_RETRIES = 2;

function isRetryable(err: CofferError, idempotent: boolean, attempt: number): boolean {
  if (err instanceof PermanentNetworkError) return false;
  if (err instanceof NotSentError) return true;
  if (!idempotent) return false;
  if (err.code === 'sealed') return attempt <= SEALED_RETRIES;
  return err.code === 'unavailable' || err.code === 'timeout' || err.status === 429 || err.status === 502 || err.status === 503 || err.status === 504;
}

function errorFromResponse(response: Response, text: string, headerRequestId: string | undefined): CofferError {
  let code = FALLBACK_CODES[response.status] ?? 'http_error';
  let message = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
  let requestId = headerRequestId;
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; requestId?: unknown } };
    const e = body.error;
    if (e && typeof e.code === 'string' && typeof e.message === 'string') {
      code = e.code;
      message = e.message;
      if (typeof e.requestId === 'string') requestId = e.requestId;
    }
  } catch {
    // Not Coffer's error format (an HTML page from a proxy?): keep the status line, never echo the body.
  }
  if (response.status !== 429 && response.status !== 502 && response.status !== 503 && response.status !== 504) return new CofferError(response.status, code, message, requestId);
  const err = new RetryableHttpError(response.status, code, message, requestId);
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
  if (retryAfterMs !== undefined) err.retryAfterMs = retryAfterMs;
  return err;
}

/** Retry-After is either delay-seconds or an HTTP date. */
function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
