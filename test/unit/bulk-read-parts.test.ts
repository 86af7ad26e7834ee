// The pieces the bulk read computes once per page instead of once per row must equal what the
// per-row code computes: the "C"-collation range of a folder prefix, and the AADs under one
// namespace's prefix (a wrong byte there would make every bulk-read value an integrity error).
import fc from 'fast-check';
import { aad, namespaceAads } from '@coffer/server/crypto/context';
import { prefixRange } from '@coffer/server/storage/prefix-range';

/** Compares as PostgreSQL's "C" collation does: by UTF-8 bytes. */
const cCompare = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

describe('prefixRange', () => {
  it('names the folder range of a path prefix', () => {
    expect(prefixRange('app/db/')).toEqual({ lower: 'app/db/', upper: 'app/db0' });
    expect(prefixRange('')).toEqual({ lower: '', upper: null });
    expect(prefixRange('a\u{10FFFF}')).toEqual({ lower: 'a\u{10FFFF}', upper: null });
    expect(prefixRange('a\uD7FF')).toEqual({ lower: 'a\uD7FF', upper: 'a\uE000' });
    expect(prefixRange('a\u{1F600}')).toEqual({ lower: 'a\u{1F600}', upper: 'a\u{1F601}' });
  });

  it('a key is in [lower, upper) exactly when it starts with the prefix (by UTF-8 bytes)', () => {
    // Any code points, and strings of the ones where UTF-8's length or the surrogate gap changes.
    const edges = fc.constantFrom('/', '0', 'a', '\u007f', '\u0080', '\u07ff', '\u0800', '\uD7FF', '\uE000', '\uFFFF', '\u{10000}', '\u{10FFFF}');
    const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 6 }), fc.string({ unit: edges, maxLength: 5 }));
    fc.assert(
      fc.property(text, text, (prefix, key) => {
        const { lower, upper } = prefixRange(prefix);
        fc.pre(upper !== null);
        for (const k of [key, prefix + key]) {
          const inRange = cCompare(k, lower) >= 0 && cCompare(k, upper!) < 0;
          expect(inRange).toBe(k.startsWith(prefix));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('namespaceAads', () => {
  it('equal aad.dek and aad.secretValue byte for byte', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.nat(), fc.nat(), (ns, secret, version, kek) => {
        const aads = namespaceAads(ns);
        expect(Buffer.from(aads.dek(secret, version, kek)).equals(Buffer.from(aad.dek(ns, secret, version, kek)))).toBe(true);
        expect(Buffer.from(aads.secretValue(secret, version)).equals(Buffer.from(aad.secretValue(ns, secret, version)))).toBe(true);
      }),
    );
  });
});
