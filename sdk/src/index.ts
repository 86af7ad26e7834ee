/** @coffer/sdk: a typed, dependency-free client for the Coffer secrets vault. */
export {
  AuditApi,
  CofferClient,
  MAX_AUDIT_PAGE,
  NamespacesApi,
  SDK_VERSION,
  SecretsApi,
  SysApi,
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
export type { FetchFn, RetryInfo } from './transport.js';
export type * from './types.js';
export {
  AuthApi,
  DEFAULT_AUDIENCE,
  DEFAULT_ID_TOKEN_ENV,
  TokenApi,
  TokenRenewer,
  detectCiIdToken,
  systemClock,
  type AuthInfo,
  type AuthResponse,
  type Capability,
  type CiIdToken,
  type CiIdTokenOptions,
  type CiProvider,
  type Clock,
  type RenewalStop,
  type RenewerOptions,
  type TokenCreateOptions,
} from './auth.js';
export { AdminApi, type ApproleOptions, type JwtIssuer, type JwtRole, type Policy, type PolicyRule, type SecretIdResult, type UserOptions } from './admin.js';
export {
  ByokApi,
  ESCROW_ALGORITHMS,
  EscrowApi,
  IMPORT_ALGORITHMS,
  type EscrowAlgorithm,
  type EscrowDownload,
  type EscrowRequest,
  type EscrowRequestOptions,
  type GenerateRootProgress,
  type ImportAlgorithm,
  type ImportParams,
  type KekRotation,
  type KekStatus,
  type KekVersionStatus,
  type RewrapCounts,
  type RotateRootResult,
  type SealMigrateResult,
  type ShredSchedule,
} from './keys.js';
export type { NamespaceExportHeader, NamespaceImportResult } from './api/namespace-transfer.js';
export { KmsApi, KmsKeysApi, unwrapKeyExport, type AadOption, type Bytes, type DataKey, type DecryptedData, type SignOptions } from './kms.js';
export {
  ENVELOPE_DEFAULT_CHUNK,
  ENVELOPE_MAX_CHUNK,
  ENVELOPE_MIN_CHUNK,
  envelopeDecrypt,
  envelopeEncrypt,
  readEnvelopeMeta,
  transformFile,
  type EnvelopeMeta,
  type EnvelopeOptions,
  type FileOptions,
  type FileProgress,
  type Unwrap,
} from './envelope.js';
export {
  KMS_DATAKEY_BITS,
  KMS_KEY_TYPES,
  KMS_MAX_BATCH_ITEMS,
  KMS_MAX_PLAINTEXT_BYTES,
  KMS_MAX_RANDOM_BYTES,
  kmsKeyNameProblem,
  KMS_PATHS,
} from './api/kms.js';
export type * from './api/kms.js';
