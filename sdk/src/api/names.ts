/**
 * Name rules of the API conventions, one implementation for the server (which
 * enforces them) and the SDK (which checks before building a URL): namespaces
 * are slugs; secret paths are `/`-separated segments of [A-Za-z0-9._-], with no
 * `.`/`..` and no empty segments. Names go into URLs unencoded, so a "." or ".."
 * segment would otherwise be collapsed by URL normalisation and address a
 * different secret than the caller named.
 *
 * The functions say why a name is wrong (null when it is right) and throw
 * nothing: each side wraps the reason in its own error.
 */
const NAMESPACE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
export const MAX_PATH_LENGTH = 512;
export const MAX_PATH_DEPTH = 32;

/** Why `name` is not a namespace name, or null when it is one. */
export function namespaceProblem(name: string): string | null {
  return NAMESPACE.test(name)
    ? null
    : 'namespace names are 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit';
}

/** Why `path` is not a secret path, or null when it is one. */
export function secretPathProblem(path: string): string | null {
  if (path.length === 0) return 'a secret path is required';
  if (path.length > MAX_PATH_LENGTH) return `secret paths are at most ${MAX_PATH_LENGTH} characters`;
  const segments = path.split('/');
  if (segments.length > MAX_PATH_DEPTH) return `secret paths have at most ${MAX_PATH_DEPTH} segments`;
  for (const segment of segments) {
    if (segment === '') return 'secret paths have no empty segments (no leading, trailing or double slashes)';
    if (segment === '.' || segment === '..') return 'secret paths have no "." or ".." segments';
    if (!SEGMENT.test(segment)) return 'secret path segments use only A-Z a-z 0-9 . _ -';
  }
  return null;
}
