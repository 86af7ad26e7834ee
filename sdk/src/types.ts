/** Response and option types of the Coffer HTTP API (`/v1`). Field names are the server's. */

export type SecretType = 'generic' | 'password' | 'token' | 'certificate' | 'key';
export type SecretData = Record<string, string>;
export type Metadata = Record<string, string>;

export interface SealStatus {
  initialized: boolean;
  sealed: boolean;
  seal_type: string | null;
  shares: number | null;
  threshold: number | null;
  /** Shares received so far in the current unseal attempt. */
  progress: number;
  /** PKCS#11 seal: shares/threshold count recovery shares; the HSM unseals. */
  recovery_seal?: boolean;
  /** The root key version in effect (rises with every rotation, migration or root import). */
  root_version?: number;
  /** PKCS#11 seal: why the last automatic unseal failed. */
  seal_error?: string;
}

export interface HealthStatus {
  initialized: boolean;
  sealed: boolean;
  /** Seconds since the epoch, as the server's clock sees it. */
  server_time_utc: number;
}

export type InitResult = ShamirInitResult | Pkcs11InitResult;

export interface ShamirInitResult {
  /** Base64 unseal shares: hand each to a different operator. */
  shares: string[];
  threshold: number;
  root_token: string;
}

/** PKCS#11 seal: the HSM holds the root key; operators hold recovery shares. */
export interface Pkcs11InitResult {
  seal_type: 'pkcs11';
  recovery_shares: string[];
  recovery_threshold: number;
  root_token: string;
}

export interface TokenInfo {
  accessor: string;
  identity: string;
  display_name: string;
  policies: string[];
  created_at: string;
  expires_at: string | null;
  /** Renewals never extend the token past this (absent from servers before identities). */
  max_expires_at?: string | null;
  renewable?: boolean;
  metadata?: Record<string, string>;
}

export interface NamespaceSummary {
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
}

export interface KekVersion {
  version: number;
  origin: string;
  state: string;
  created_at: string;
}

export interface NamespaceDetail extends NamespaceSummary {
  secret_count: number;
  /** Seconds between scheduled KEK rotations; null: manual only. */
  rotation_period?: number | null;
  /** Set while a crypto-shred is scheduled: the namespace is disabled until then. */
  deletion_date?: string | null;
  kek: { current_version: number; versions: KekVersion[] };
}

export interface NamespacePage {
  namespaces: NamespaceSummary[];
  next_cursor: string | null;
}

export interface NamespaceDeleteResult {
  secrets_deleted: number;
}

export interface WriteResult {
  namespace: string;
  path: string;
  version: number;
  created_at: string;
}

export interface SecretVersion {
  namespace: string;
  path: string;
  version: number;
  type: SecretType;
  data: SecretData;
  metadata: Metadata;
  created_at: string;
}

export interface SecretListPage {
  namespace: string;
  /** '' for the namespace root, otherwise ends with '/'. */
  folder: string;
  /** Relative to the folder; sub-folders end with '/' (recursive lists hold only secret paths). */
  keys: string[];
  next_cursor: string | null;
}

export interface VersionInfo {
  version: number;
  type: SecretType;
  metadata: Metadata;
  created_at: string;
  deleted_at: string | null;
  destroyed_at: string | null;
}

export interface SecretHistory {
  namespace: string;
  path: string;
  current_version: number;
  max_versions: number;
  created_at: string;
  updated_at: string;
  /** Newest first. */
  versions: VersionInfo[];
}

export interface VersionsResult {
  namespace: string;
  path: string;
  versions: number[];
}

export interface PurgeResult {
  namespace: string;
  path: string;
  versions_removed: number;
}

export interface BulkPage {
  namespace: string;
  folder: string;
  secrets: SecretVersion[];
  next_cursor: string | null;
}

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

/** Stable action names of audit entries; servers may add more. */
export type AuditAction =
  | 'secret.read'
  | 'secret.write'
  | 'secret.list'
  | 'secret.bulk_read'
  | 'secret.history'
  | 'secret.rollback'
  | 'secret.delete'
  | 'secret.undelete'
  | 'secret.destroy'
  | 'secret.purge'
  | 'namespace.create'
  | 'namespace.list'
  | 'namespace.read'
  | 'namespace.delete'
  | 'sys.init'
  | 'sys.unseal'
  | 'sys.seal'
  | 'sys.seal-status'
  | 'sys.audit'
  | 'sys.audit.verify'
  | 'sys.audit.hash'
  | 'auth.token.lookup-self'
  | 'auth.token.revoke-self'
  | 'unknown'
  | (string & {});

/** `unknown`: an entry recovered from the intent a request recorded before it ran; its own entry was never written. */
export type AuditOutcome = 'success' | 'denied' | 'error' | 'unknown';

export interface AuditIdentity {
  id: string;
  method: 'token' | 'none';
  display_name: string;
  /** HMAC of the token's accessor (find it with `audit.hash(accessor)`); never the accessor itself. */
  accessor_hmac?: string;
}

/** One request, as the audit log recorded it. Holds HMACs of sensitive values, never the values. */
export interface AuditEntry {
  /** Position in the log: increasing, without gaps. */
  seq: number;
  time: string;
  /** The X-Request-Id the caller got. */
  request_id: string;
  /** null when the request carried no valid token. */
  identity: AuditIdentity | null;
  action: AuditAction;
  namespace: string | null;
  path: string | null;
  version: number | null;
  outcome: AuditOutcome;
  /** The status the caller got; 0 when not known (outcome `unknown`). */
  status: number;
  error_code: string | null;
  /** The caller's address. */
  client: string | null;
  /** HMACs of sensitive request fields, e.g. {"data.password": "hmac-sha256:…"}. */
  hashed: Record<string, string>;
  /** The handler's status when the caller got another (the audit log refused the response with 503; the change, if any, took effect). */
  handler_status?: number;
  /** Why the entry is not a plain record of a response: recovered from an intent, refused by an audit sink, or an audit incident. */
  reason?: string;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** Pass back as `cursor` (with the same order) for the next page; null on the last. */
  next_cursor: number | null;
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

export interface AuditVerifyResult {
  ok: boolean;
  entries_checked: number;
  checkpoints_checked: number;
  /** The newest entry; null for an empty log. */
  head: { seq: number; hash: string } | null;
  /** The first entry or checkpoint that fails its check. */
  first_broken: { seq: number; reason: string } | null;
  /** Entries recovered from intents (outcome `unknown`): requests whose own entry was never written. */
  recovered_entries: number;
  /** Intents not yet turned into entries: requests in flight, or ones the recovery pass has not reached yet. */
  pending_intents: number;
}
