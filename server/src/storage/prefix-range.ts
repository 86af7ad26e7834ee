/**
 * A key prefix as a range of the "C" collation: the keys starting with
 * `prefix` are exactly those in [prefix, upper). A b-tree index on the column
 * can scan that range directly, where `starts_with(col, prefix)` is a filter
 * over the whole namespace on PostgreSQL before 15 and on any collation but "C".
 *
 * "C" orders by UTF-8 bytes, which is code point order, and UTF-8 is prefix
 * free; so raising the prefix's last code point by one gives the first key
 * past every key under it. `upper` is null when no such key exists (an empty
 * prefix, or one ending in U+10FFFF): then only the lower bound applies and
 * the caller keeps a `starts_with` check.
 */
export function prefixRange(prefix: string): { lower: string; upper: string | null } {
  if (prefix === '') return { lower: '', upper: null };
  const last = prefix.codePointAt(prefix.length - 1 - (isLowSurrogate(prefix.charCodeAt(prefix.length - 1)) ? 1 : 0))!;
  const head = prefix.slice(0, prefix.length - (last > 0xffff ? 2 : 1));
  if (last >= 0x10ffff) return { lower: prefix, upper: null };
  // Skip the surrogate block: it holds no code points a UTF-8 string can contain.
  const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
  return { lower: prefix, upper: head + String.fromCodePoint(next) };
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
