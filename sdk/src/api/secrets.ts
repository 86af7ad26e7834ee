/** `/v1/secrets` and `/v1/bulk`: versioned secrets. */

/** What each type requires of `data` is checked by the server at write time. */
export const SECRET_TYPES = ['generic', 'password', 'token', 'certificate', 'key'] as const;
export type SecretType = (typeof SECRET_TYPES)[number];
export type SecretData = Record<string, string>;
export type Metadata = Record<string, string>;

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
