/**
 * Which storage failures a client sees as something other than a bug. Storage
 * recognises its own errors (storage/errors.ts) but knows nothing of the
 * service error codes; the composition root joins the two and hands the
 * result to the HTTP edge, so http/ never reaches into storage/.
 */
import { CofferError } from '../errors.js';
import { isConnectionError, isForeignKeyViolation } from '../storage/errors.js';

/** Seconds a client is asked to wait (Retry-After) while the database is away; a restart takes about this long. */
export const DATABASE_RETRY_AFTER_SECONDS = 1;

export const databaseUnavailable = () =>
  new CofferError('unavailable', 'the database is unavailable; retry shortly', undefined, DATABASE_RETRY_AFTER_SECONDS);

/**
 * The storage failures a caller may see as something other than a bug: the
 * database restarting or out of reach (temporary: the client is told when to
 * come back), and a key wrapped under a root version that a concurrent
 * rotation retired (migration 0005). Null for anything else. The HTTP edge is
 * handed this by server.ts.
 */
export function classifyStorageError(err: unknown): CofferError | null {
  if (isForeignKeyViolation(err) && /root_version_fkey/.test(String((err as { constraint?: unknown }).constraint ?? (err as Error).message))) {
    return new CofferError('unavailable', 'the root key was rotated while this request ran; retry');
  }
  if (isConnectionError(err)) return databaseUnavailable();
  return null;
}
