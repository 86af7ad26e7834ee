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
}

export interface HealthStatus {
  initialized: boolean;
  sealed: boolean;
  /** Seconds since the epoch, as the server's clock sees it. */
  server_time_utc: number;
}

export interface InitResult {
  /** Base64 unseal shares: hand each to a different operator. */
  shares: string[];
  threshold: number;
  root_token: string;
}

export interface TokenInfo {
  accessor: string;
  identity: string;
  display_name: string;
  policies: string[];
  created_at: string;
  expires_at: string | null;
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
