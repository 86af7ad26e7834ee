/**
 * Secret references: `coffer://<namespace>/<path>[#<field>][?version=N]`. The
 * syntax is the contract's (sdk/src/api/refs.ts); this module turns a refusal
 * into the SDK's error.
 */
import { readSecretRef, secretRefText, type SecretRef } from './api/refs.js';
import { invalidArgument } from './errors.js';
import { checkNamespace, checkSecretPath } from './names.js';

export { isSecretRef, type SecretRef } from './api/refs.js';

export function parseSecretRef(ref: string): SecretRef {
  const read = readSecretRef(ref);
  if ('problem' in read) throw invalidArgument(`invalid secret reference ${JSON.stringify(ref)}: ${read.problem}`);
  return read.ref;
}

/** The canonical string for a reference (documented order, field percent-encoded). */
export function formatSecretRef(ref: SecretRef): string {
  const text = secretRefText(ref);
  checkNamespace(ref.namespace);
  checkSecretPath(ref.path);
  return text;
}
