/**
 * Client-side checks of namespace names, secret paths and folders, with the
 * server's rules (the contract's, sdk/src/api/names.ts). Names go into URLs
 * unencoded, so they are validated instead of percent-encoded.
 */
import { namespaceProblem, secretPathProblem } from './api/names.js';
import { invalidArgument } from './errors.js';

export { MAX_PATH_DEPTH, MAX_PATH_LENGTH, namespaceProblem, secretPathProblem } from './api/names.js';

export function checkNamespace(name: string): string {
  const problem = namespaceProblem(name);
  if (problem) throw invalidArgument(`invalid namespace ${JSON.stringify(name)}: ${problem}`);
  return name;
}

export function checkSecretPath(path: string): string {
  const problem = secretPathProblem(path);
  if (problem) throw invalidArgument(`invalid secret path ${JSON.stringify(path)}: ${problem}`);
  return path;
}

/**
 * Normalises a folder to the server's form: '' for the namespace root ('' or '/'),
 * otherwise a valid path with one trailing '/' ('db' and 'db/' both give 'db/').
 */
export function normalizeFolder(folder: string): string {
  if (folder === '' || folder === '/') return '';
  const bare = folder.endsWith('/') ? folder.slice(0, -1) : folder;
  const problem = secretPathProblem(bare);
  if (problem) throw invalidArgument(`invalid folder ${JSON.stringify(folder)}: ${problem}`);
  return `${bare}/`;
}
