/**
 * Makes request-derived text storable in PostgreSQL `text` columns. PostgreSQL
 * refuses U+0000 outright, and a lone UTF-16 surrogate has no UTF-8 encoding
 * (drivers silently turn it into U+FFFD, so the column would no longer match the
 * hashed body). Either would make an audit entry unwritable, and before the
 * batch fallback one such entry failed every request of its group commit. So
 * every string of a draft (identity, action, namespace, path, hashed field
 * names, ...) passes through here once, before the entry is hashed, stored in
 * columns, written to line sinks or recorded as an intent: body, columns and
 * chain hash all see the same text.
 *
 * Such a code unit becomes its JSON escape as plain text (`\u0000`, `\ud800`):
 * what the client sent, in the notation it was sent in. Backslashes are not
 * escaped themselves, so `x\u0000` in an entry means "x, then a NUL or the six
 * characters \u0000"; user and role names, namespaces and secret paths cannot
 * contain a backslash, so none of those is ever mistaken for an escape.
 */

// NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// A cheap first look: NUL or any surrogate at all (valid pairs included).
const SUSPECT = /[\u0000\ud800-\udfff]/;

const escape = (unit: string) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** True if `text` holds U+0000 or an unpaired surrogate: the one rule for what text PostgreSQL cannot store (the HTTP edge refuses it too). */
export function isUnstorableText(text: string): boolean {
  if (!SUSPECT.test(text)) return false;
  UNSTORABLE.lastIndex = 0;
  return UNSTORABLE.test(text);
}

export function storableText(text: string): string {
  return SUSPECT.test(text) ? text.replace(UNSTORABLE, escape) : text;
}

/**
 * A copy of `value` (plain objects, arrays, strings, numbers, booleans, null)
 * whose strings and object keys are all storable. A value with nothing
 * suspect in it comes back as it is, after a walk that allocates nothing: this
 * runs for every audit entry.
 */
export function storable<T>(value: T): T {
  return suspect(value) ? (clean(value) as T) : value;
}

const plainObject = (value: object) => Object.getPrototypeOf(value) === Object.prototype;

function suspect(value: unknown): boolean {
  if (typeof value === 'string') return SUSPECT.test(value);
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return value.some(suspect);
  if (!plainObject(value)) return false;
  for (const key in value) if (SUSPECT.test(key) || suspect((value as Record<string, unknown>)[key])) return true;
  return false;
}

function clean(value: unknown): unknown {
  if (typeof value === 'string') return storableText(value);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(clean);
  if (!plainObject(value)) return value; // Dates and the like
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [storableText(k), clean(v)]));
}
