/**
 * Names per the API conventions, with the rules of the wire contract
 * (sdk/src/api/names.ts, which the SDK checks with too). Validated at the
 * edge, trusted inside: a refusal is a 400 with the contract's reason.
 */
import { namespaceProblem, secretPathProblem } from '@coffer/sdk/api';
import { badRequest } from '../errors.js';

export { MAX_PATH_LENGTH } from '@coffer/sdk/api';

export function isNamespaceName(name: string): boolean {
  return namespaceProblem(name) === null;
}

export function checkNamespaceName(name: string): string {
  const problem = namespaceProblem(name);
  if (problem) throw badRequest(problem);
  return name;
}

export function checkSecretPath(path: string): string {
  const problem = secretPathProblem(path);
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
