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

/**
 * One page of `GET /v1/bulk/{ns}/{folder/}`. A folder under which the caller
 * can see nothing (no secret, or none it may read or list) is a 404 not_found,
 * so a typo in a folder name never looks like an empty set of secrets.
 */
export interface BulkPage {
  namespace: string;
  folder: string;
  /** The latest version of every secret in this page the caller may `read` (deleted or destroyed latest versions are skipped). */
  secrets: SecretVersion[];
  /**
   * Full paths of the secrets in this page the caller may list (the listing rule: `list` on
   * the secret and on every folder between) but not read: left out of `secrets`. Secrets the
   * caller may neither read nor list are not named.
   */
  withheld: string[];
  next_cursor: string | null;
}

/** Every page of a bulk read: what the SDK's `secrets.bulk()` returns. */
export interface BulkResult {
  namespace: string;
  folder: string;
  secrets: SecretVersion[];
  /** Paths the caller may list but not read, left out of `secrets` (see BulkPage). */
  withheld: string[];
}
