/**
 * Cursor pagination: a page holds at most `limit` items; `next_cursor` is the
 * last item's sort key when more follow. Cursors are opaque to clients
 * (base64url of the key), so the key format can change.
 */
import { badRequest } from '../errors.js';

export interface PageRequest {
  limit: number;
  after: string;
}

export function decodeCursor(cursor: string | undefined): string {
  if (cursor === undefined || cursor === '') return '';
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  if (Buffer.from(decoded, 'utf8').toString('base64url') !== cursor) throw badRequest('invalid cursor');
  return decoded;
}

export function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

/** Given up to limit+1 rows, returns the page and the cursor for the next one. */
export function takePage<T>(rows: T[], limit: number, keyOf: (row: T) => string): { items: T[]; next_cursor: string | null } {
  if (rows.length <= limit) return { items: rows, next_cursor: null };
  const items = rows.slice(0, limit);
  return { items, next_cursor: encodeCursor(keyOf(items[items.length - 1]!)) };
}
