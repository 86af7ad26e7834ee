/** @coffer/sdk: a typed, dependency-free client for the Coffer secrets vault. */
export {
  AuditApi,
  CofferClient,
  MAX_AUDIT_PAGE,
  NamespacesApi,
  SDK_VERSION,
  SecretsApi,
  SysApi,
  TokenApi,
  type CofferClientOptions,
} from './client.js';
export { CofferError, type CofferErrorCode } from './errors.js';
export {
  MAX_PATH_DEPTH,
  MAX_PATH_LENGTH,
  checkNamespace,
  checkSecretPath,
  namespaceProblem,
  normalizeFolder,
  secretPathProblem,
} from './names.js';
export { formatSecretRef, isSecretRef, parseSecretRef, type SecretRef } from './refs.js';
export type { FetchFn } from './transport.js';
export type * from './types.js';
