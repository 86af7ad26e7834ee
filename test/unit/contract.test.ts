// The wire contract (@coffer/sdk/api) is the one source of the error codes and the name rules:
// the server and the SDK refuse the same names for the same reason.
import { httpStatus } from '@coffer/server/http/status';
import { ERROR_CODES, namespaceProblem, secretPathProblem } from '@coffer/sdk/api';
import { CofferError as ClientError, checkNamespace, checkSecretPath } from '@coffer/sdk';
import { CofferError as ServerError } from '@coffer/server/errors';
import { checkNamespaceName, checkSecretPath as serverCheckSecretPath } from '@coffer/server/secrets/names';

const refusal = (check: () => unknown): { status: number; code: string; message: string } => {
  try {
    check();
  } catch (err) {
    if (err instanceof ServerError) return { status: httpStatus(err), code: err.code, message: err.message };
    if (err instanceof ClientError) return { status: err.status, code: err.code, message: err.message };
    throw err;
  }
  throw new Error('accepted');
};

describe('wire contract', () => {
  it('lists each error code once', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect(ERROR_CODES).toEqual(expect.arrayContaining(['namespace_disabled', 'integrity_error', 'sealed', 'unavailable']));
  });

  it.each(['', 'A', '-a', 'a_b', 'x'.repeat(64)])('server and SDK refuse the namespace %j with the contract reason', (name) => {
    const reason = namespaceProblem(name)!;
    expect(reason).toMatch(/namespace names/);
    expect(refusal(() => checkNamespaceName(name))).toEqual({ status: 400, code: 'invalid_request', message: reason });
    expect(refusal(() => checkNamespace(name))).toEqual({ status: 0, code: 'invalid_argument', message: `invalid namespace ${JSON.stringify(name)}: ${reason}` });
  });

  it.each(['', 'a//b', 'a/../b', 'a b', 'x'.repeat(513), Array(33).fill('a').join('/')])('server and SDK refuse the path %j with the contract reason', (path) => {
    const reason = secretPathProblem(path)!;
    expect(reason).toBeTruthy();
    expect(refusal(() => serverCheckSecretPath(path))).toEqual({ status: 400, code: 'invalid_request', message: reason });
    expect(refusal(() => checkSecretPath(path))).toEqual({ status: 0, code: 'invalid_argument', message: `invalid secret path ${JSON.stringify(path)}: ${reason}` });
  });
});
