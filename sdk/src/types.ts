/**
 * Types of the Coffer HTTP API (`/v1`). The wire shapes are the contract's
 * (sdk/src/api/, shared with the server); the option types below are the
 * SDK's own (camelCase where they are not sent as is).
 */
import type { AuditAction, AuditOutcome, Metadata, SecretType } from './api/index.js';

export type {
  AuditAction,
  AuditEntry,
  AuditIdentity,
  AuditOutcome,
  AuditPage,
  AuditVerifyResult,
  BulkPage,
  BulkResult,
  HealthStatus,
  InitResult,
  KekVersion,
  Metadata,
  NamespaceDeleteResult,
  NamespaceDetail,
  NamespacePage,
  NamespaceSummary,
  Pkcs11InitResult,
  PurgeResult,
  SealStatus,
  SecretData,
  SecretHistory,
  SecretListPage,
  SecretType,
  SecretVersion,
  ShamirInitResult,
  TokenInfo,
  VersionInfo,
  VersionsResult,
  WriteResult,
} from './api/index.js';

export interface PageOptions {
  limit?: number;
  cursor?: string;
}

export interface PutOptions {
  type?: SecretType;
  metadata?: Metadata;
  /** Check-and-set: the version you believe is current; 0 = the secret must not exist yet. */
  cas?: number;
  maxVersions?: number;
}

/** Filters of an audit search; all optional, combined with AND. */
export interface AuditFilter {
  /** Identity id, e.g. "root". */
  identity?: string;
  namespace?: string;
  /** Path prefix: "db/" matches every path under db/. */
  path?: string;
  action?: AuditAction;
  outcome?: AuditOutcome;
  /** Entries at or after this time (a Date or an ISO 8601 timestamp with offset). */
  since?: Date | string;
  /** Entries before this time. */
  until?: Date | string;
}

export interface AuditQuery extends AuditFilter {
  /** A seq: entries before it (order desc) or after it (order asc). */
  cursor?: number;
  /** Default desc: newest first. */
  order?: 'asc' | 'desc';
  /** Entries per page, 1–1000; the server's default is 100. */
  limit?: number;
}
