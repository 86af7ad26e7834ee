/** Recognises PostgreSQL error codes; `pg` and PGlite both expose `code`. */
export function pgErrorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export const isUniqueViolation = (err: unknown) => pgErrorCode(err) === '23505';
export const isForeignKeyViolation = (err: unknown) => pgErrorCode(err) === '23503';

/**
 * SQLSTATEs that say "the database is not there right now", not "this request
 * is wrong": class 08 (connection exception), the server shutting down or
 * starting up (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect
 * now) and 53300 (too many connections).
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

/** Socket errors from Node when the database host cannot be reached or drops the connection. */
const SOCKET_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * What `pg`, `pg-pool` and Kysely's Postgres driver say, without a code, when a
 * connection breaks, cannot be made in time, or was thrown away after breaking.
 */
const DRIVER_MESSAGES = [
  /^Connection terminated/, // "… unexpectedly", "… due to connection timeout"
  /^timeout exceeded when trying to connect$/,
  /^Client has encountered a connection error and is not queryable$/,
  /^Client was closed and is not queryable$/,
  /^Postgres connection has been discarded$/,
];

/**
 * Did this error come from losing (or failing to reach) the database, rather
 * than from the statement? Such a failure is temporary: the request may be
 * retried once the database is back. The cause chain is followed a few levels
 * (pg-pool wraps connect timeouts).
 */
export function isConnectionError(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = pgErrorCode(e);
    if (code && (code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code) || SOCKET_ERRNOS.has(code))) return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && DRIVER_MESSAGES.some((re) => re.test(message))) return true;
  }
  return false;
}

