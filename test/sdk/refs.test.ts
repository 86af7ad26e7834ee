// Secret references and name validation in @coffer/sdk: what the client accepts
// before it builds a URL, and what it refuses with a clear, client-side error.

import { CofferError, checkNamespace, checkSecretPath, formatSecretRef, normalizeFolder, parseSecretRef } from '@coffer/sdk';

function refusal(f: () => unknown): CofferError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(CofferError);
    return err as CofferError;
  }
  throw new Error('expected a CofferError');
}

describe('parseSecretRef', () => {
  it('reads the namespace and the path', () => {
    expect(parseSecretRef('coffer://payments-prod/db/password')).toEqual({ namespace: 'payments-prod', path: 'db/password' });
  });

  it('reads a field and a version in the documented order (#field?version=N)', () => {
    expect(parseSecretRef('coffer://app/db/password#password?version=3')).toEqual({
      namespace: 'app',
      path: 'db/password',
      field: 'password',
      version: 3,
    });
  });

  it('also accepts the URL order (?version=N#field)', () => {
    expect(parseSecretRef('coffer://app/db/password?version=3#password')).toEqual(parseSecretRef('coffer://app/db/password#password?version=3'));
  });

  it('takes a field or a version alone', () => {
    expect(parseSecretRef('coffer://app/tls/api#private_key')).toEqual({ namespace: 'app', path: 'tls/api', field: 'private_key' });
    expect(parseSecretRef('coffer://app/tls/api?version=12')).toEqual({ namespace: 'app', path: 'tls/api', version: 12 });
  });

  it('percent-decodes the field, so any field name can be referenced', () => {
    expect(parseSecretRef('coffer://app/x#my%20key%23%3F').field).toBe('my key#?');
  });

  it.each([
    ['https://app/db/password', 'coffer://'],
    ['coffer:/app/db/password', 'coffer://'],
    ['coffer://app', 'a secret path is required'],
    ['coffer://app/', 'a secret path is required'],
    ['coffer://App/db', 'namespace names'],
    ['coffer:///db', 'namespace names'],
    ['coffer://app/db//password', 'empty segments'],
    ['coffer://app/db/password/', 'empty segments'],
    ['coffer://app/../other/x', '".."'],
    ['coffer://app/db pass', 'A-Z a-z 0-9'],
    ['coffer://app/db/password#', 'the #field is empty'],
    ['coffer://app/db/password#a#b', 'at most one #field'],
    ['coffer://app/db/password?version=1?version=2', 'at most one #field'],
    ['coffer://app/db/password?v=1', 'the only query parameter is version=N'],
    ['coffer://app/db/password?version=0', 'positive integer'],
    ['coffer://app/db/password?version=-1', 'positive integer'],
    ['coffer://app/db/password?version=1.5', 'positive integer'],
    ['coffer://app/db/password?version=1&version=2', 'positive integer'],
    ['coffer://app/db/password#%E0%A4%A', 'percent-encoding'],
  ])('refuses %s (%s)', (ref, why) => {
    const err = refusal(() => parseSecretRef(ref));
    expect(err.code).toBe('invalid_argument');
    expect(err.status).toBe(0);
    expect(err.message).toContain(why);
  });

  it('formatSecretRef gives back a string that parses to the same reference', () => {
    const ref = { namespace: 'app', path: 'db/password', field: 'odd #field?', version: 4 };
    const text = formatSecretRef(ref);
    expect(text).toBe('coffer://app/db/password#odd%20%23field%3F?version=4');
    expect(parseSecretRef(text)).toEqual(ref);
  });
});

describe('secret path validation', () => {
  it.each(['a', 'db/password', 'A-Z_a.z-0.9/x', '...x', 'a/.b/c.', Array(32).fill('s').join('/'), 'x'.repeat(512)])('accepts %s', (path) => {
    expect(checkSecretPath(path)).toBe(path);
  });

  it.each([
    ['', 'required'],
    ['/a', 'empty segments'],
    ['a/', 'empty segments'],
    ['a//b', 'empty segments'],
    ['.', '"."'],
    ['a/./b', '"."'],
    ['a/../b', '".."'],
    ['a b', 'A-Z a-z 0-9'],
    ['a%2fb', 'A-Z a-z 0-9'],
    ['a:versions', 'A-Z a-z 0-9'],
    ['a?x=1', 'A-Z a-z 0-9'],
    ['gehäuse', 'A-Z a-z 0-9'],
    [Array(33).fill('s').join('/'), 'at most 32 segments'],
    ['x'.repeat(513), 'at most 512 characters'],
  ])('refuses %j (%s)', (path, why) => {
    const err = refusal(() => checkSecretPath(path));
    expect(err.code).toBe('invalid_argument');
    expect(err.message).toContain(why);
  });

  it('normalises folders to "" (the root) or a path ending in one "/"', () => {
    expect(normalizeFolder('')).toBe('');
    expect(normalizeFolder('/')).toBe('');
    expect(normalizeFolder('db')).toBe('db/');
    expect(normalizeFolder('db/')).toBe('db/');
    expect(normalizeFolder('a/b/c/')).toBe('a/b/c/');
    for (const bad of ['/db', 'db//', '../db', 'a b/']) expect(refusal(() => normalizeFolder(bad)).code).toBe('invalid_argument');
  });
});

describe('namespace validation', () => {
  it.each(['a', '7', 'payments-prod', 'a'.repeat(63)])('accepts %s', (name) => {
    expect(checkNamespace(name)).toBe(name);
  });

  it.each(['', 'A', 'Payments', '-a', 'a-', 'a_b', 'a.b', 'a/b', 'a'.repeat(64)])('refuses %j', (name) => {
    expect(refusal(() => checkNamespace(name)).code).toBe('invalid_argument');
  });
});
