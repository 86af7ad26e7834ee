/**
 * Names per the API conventions: namespaces are slugs; secret paths are
 * `/`-separated segments of [A-Za-z0-9._-], with no `.`/`..` and no empty
 * segments. Validated at the edge, trusted inside.
 */
import { badRequest } from '../errors.js';

const NAMESPACE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
export const MAX_PATH_LENGTH = 512;
const MAX_DEPTH = 32;

export function isNamespaceName(name: string): boolean {
  return NAMESPACE.test(name);
}

export function checkNamespaceName(name: string): string {
  if (!isNamespaceName(name)) {
    throw badRequest(
      'namespace names are 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit',
    );
  }
  return name;
}

function pathProblem(path: string): string | null {
  if (path.length === 0) return 'a secret path is required';
  if (path.length > MAX_PATH_LENGTH) return `secret paths are at most ${MAX_PATH_LENGTH} characters`;
  const segments = path.split('/');
  if (segments.length > MAX_DEPTH) return `secret paths have at most ${MAX_DEPTH} segments`;
  for (const segment of segments) {
    if (segment === '') return 'secret paths have no empty segments (no leading, trailing or double slashes)';
    if (segment === '.' || segment === '..') return 'secret paths have no "." or ".." segments';
    if (!SEGMENT.test(segment)) return 'secret path segments use only A-Z a-z 0-9 . _ -';
  }
  return null;
}

export function checkSecretPath(path: string): string {
  const problem = pathProblem(path);
  if (problem) throw badRequest(problem);
  return path;
}

/** A folder prefix: '' (the namespace root) or a valid path followed by '/'. */
export function checkFolder(folder: string): string {
  if (folder === '') return '';
  if (!folder.endsWith('/')) throw badRequest('a folder ends with "/"');
  checkSecretPath(folder.slice(0, -1));
  return folder;
}
