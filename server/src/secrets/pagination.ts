/**
 * Cursor pagination: a page holds at most `limit` items; `next_cursor` is the
 * last item's sort key when more follow. Cursors are opaque to clients
 * (base64url of the key), so the key format can change.
 *
 * Listings the caller sees only part of (collectVisible) keep reading until
 * the page is full or the rows run out: a page is short only at the end, and
 * a cursor is always the key of an item the caller was shown, so a hidden name
 * never leaks through it.
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

/** true: show the row; false: hide it; a key: hide it and every row up to that key (a denied folder, skipped at once). */
export type Verdict = boolean | string;

/**
 * Up to `want` rows that `judge` lets the caller see, reading rows in key order
 * after `after`, `batch` at a time. `fetch(after, n)` returns at most n rows
 * whose key is greater than `after`, in key order (the database's "C" collation
 * and JavaScript's string order agree on the ASCII names used here).
 */
export async function collectVisible<T>(
  fetch: (after: string, n: number) => Promise<readonly T[]>,
  after: string,
  want: number,
  keyOf: (row: T) => string,
  judge: (row: T) => Verdict | Promise<Verdict>,
  batch = want,
): Promise<T[]> {
  const kept: T[] = [];
  const n = Math.max(1, batch);
  let cursor = after;
  for (;;) {
    const rows = await fetch(cursor, n);
    for (const row of rows) {
      const key = keyOf(row);
      if (key <= cursor) continue; // inside a range skipped by an earlier verdict
      cursor = key;
      // Most judges answer at once: awaiting only a promise spares a microtask per row.
      const judged = judge(row);
      const verdict = judged instanceof Promise ? await judged : judged;
      if (verdict === true) {
        kept.push(row);
        if (kept.length >= want) return kept;
      } else if (typeof verdict === 'string' && verdict > cursor) {
        cursor = verdict;
      }
    }
    if (rows.length < n) return kept;
  }
}
