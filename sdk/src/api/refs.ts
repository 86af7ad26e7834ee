/**
 * Secret references: `coffer://<namespace>/<path>[#<field>][?version=N]`, the form
 * config files and env vars use to point at a secret (or one field of it).
 *
 * Parsed by hand rather than with `URL`: the documented order puts the fragment
 * before the query, which a URL parser would read as one fragment. The URL order
 * (`?version=N#field`) is accepted too, since people will write it.
 */
import { namespaceProblem, secretPathProblem } from './names.js';

export interface SecretRef {
  namespace: string;
  path: string;
  /** One field of the secret's data; absent means the whole secret. */
  field?: string;
  /** A specific version; absent means the latest. */
  version?: number;
}

export const SECRET_REF_SCHEME = 'coffer://';
const DOCUMENTED_ORDER = /^(?:#([^#?]*))?(?:\?([^#?]*))?$/;
const URL_ORDER = /^\?([^#?]*)#([^#?]*)$/;
const VERSION = /^[1-9][0-9]{0,9}$/;

export function isSecretRef(value: string): boolean {
  return value.startsWith(SECRET_REF_SCHEME);
}

/** The reference `text` names, or why it names none (the caller wraps the reason in its own error). */
export function readSecretRef(text: string): { ref: SecretRef } | { problem: string } {
  const fail = (problem: string) => ({ problem });
  if (!isSecretRef(text)) return fail(`it must start with ${SECRET_REF_SCHEME}`);

  const rest = text.slice(SECRET_REF_SCHEME.length);
  const selectorsAt = rest.search(/[#?]/);
  const location = selectorsAt === -1 ? rest : rest.slice(0, selectorsAt);
  const selectors = selectorsAt === -1 ? '' : rest.slice(selectorsAt);

  const slash = location.indexOf('/');
  const namespace = slash === -1 ? location : location.slice(0, slash);
  const path = slash === -1 ? '' : location.slice(slash + 1);
  const nsProblem = namespaceProblem(namespace);
  if (nsProblem) return fail(nsProblem);
  const pathProblem = secretPathProblem(path);
  if (pathProblem) return fail(pathProblem);

  let rawField: string | undefined;
  let query: string | undefined;
  const documented = DOCUMENTED_ORDER.exec(selectors);
  const urlOrder = documented ? null : URL_ORDER.exec(selectors);
  if (documented) [, rawField, query] = documented;
  else if (urlOrder) [, query, rawField] = urlOrder;
  else return fail('expected at most one #field and one ?version=N');

  const ref: SecretRef = { namespace, path };
  if (rawField !== undefined) {
    if (rawField === '') return fail('the #field is empty');
    try {
      // Percent-decoding lets a ref name fields holding "#", "?" or spaces.
      ref.field = decodeURIComponent(rawField);
    } catch {
      return fail('the #field has a malformed percent-encoding');
    }
  }
  if (query !== undefined) {
    const match = /^version=(.*)$/.exec(query);
    if (!match) return fail('the only query parameter is version=N');
    if (!VERSION.test(match[1]!)) return fail('version must be a positive integer');
    ref.version = Number(match[1]);
  }
  return { ref };
}

/**
 * The canonical text of a reference (documented order, field percent-encoded).
 * Check the namespace and path first: they are written as given.
 */
export function secretRefText(ref: SecretRef): string {
  const field = ref.field === undefined ? '' : `#${encodeURIComponent(ref.field)}`;
  const version = ref.version === undefined ? '' : `?version=${ref.version}`;
  return `${SECRET_REF_SCHEME}${ref.namespace}/${ref.path}${field}${version}`;
}
