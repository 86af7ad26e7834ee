// Namespace and path rules from the API conventions.
import { checkFolder, checkNamespaceName, checkSecretPath, isNamespaceName } from '@coffer/server/secrets/names';

describe('names', () => {
  it.each(['payments-prod', 'a', 'a1', '0-x', 'x'.repeat(63)])('accepts the namespace %s', (n) => {
    expect(isNamespaceName(n)).toBe(true);
    expect(checkNamespaceName(n)).toBe(n);
  });

  it.each(['', 'A', '-a', 'a-', 'a_b', 'a.b', 'a/b', 'x'.repeat(64), 'ä'])('refuses the namespace %j', (n) => {
    expect(() => checkNamespaceName(n)).toThrow(/namespace names/);
  });

  it.each(['db/password', 'a', 'A.b_c-d/e', '..a/b..', '.env'])('accepts the path %s', (p) => {
    expect(checkSecretPath(p)).toBe(p);
  });

  it.each(['', '/a', 'a/', 'a//b', '.', '..', 'a/../b', 'a/./b', 'a b', 'a:b', 'a%2f', 'é', 'x'.repeat(513), Array(33).fill('a').join('/')])(
    'refuses the path %j',
    (p) => {
      expect(() => checkSecretPath(p)).toThrow();
    },
  );

  it('accepts folders ending in a slash, or the root', () => {
    expect(checkFolder('')).toBe('');
    expect(checkFolder('app/')).toBe('app/');
    expect(checkFolder('app/nested/')).toBe('app/nested/');
    expect(() => checkFolder('app')).toThrow();
    expect(() => checkFolder('/')).toThrow();
    expect(() => checkFolder('app//')).toThrow();
  });
});
