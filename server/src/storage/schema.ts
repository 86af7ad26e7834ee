/** Table types for Kysely. Both dialects return bytea as Uint8Array (pg: Buffer). */
import type { ColumnType, Generated, Selectable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Bytes = ColumnType<Uint8Array, Uint8Array, Uint8Array>;
type Json<T> = ColumnType<T, string, string>;

export interface SealConfigTable {
  id: number;
  seal_type: string;
  shares: number;
  threshold: number;
  root_version: number;
  /** AEAD of a fixed plaintext under the root key: proves a reconstructed key is the right one. */
  root_check: Bytes;
  created_at: Generated<Date>;
  /** PKCS#11 seal: label of the root key object in effect (null with Shamir). */
  hsm_key_label: ColumnType<string | null, string | null | undefined, string | null>;
  /** PKCS#11 seal: AEAD of a fixed plaintext under the recovery key (null with Shamir). */
  recovery_check: ColumnType<Uint8Array | null, Uint8Array | null | undefined, Uint8Array | null>;
  /** Shamir rekey awaiting verification: the next root key, wrapped by the current one. */
  pending_root: ColumnType<Uint8Array | null, Uint8Array | null | undefined, Uint8Array | null>;
  pending_shares: ColumnType<number | null, number | null | undefined, number | null>;
  pending_threshold: ColumnType<number | null, number | null | undefined, number | null>;
  /** The root key in effect (software) wrapped by the previous root version, for other servers to follow. */
  root_chain: ColumnType<Uint8Array | null, Uint8Array | null | undefined, Uint8Array | null>;
}

export interface SystemKeyTable {
  name: string;
  version: number;
  wrapped_key: Bytes;
  root_version: number;
  created_at: Generated<Date>;
}

export interface NamespaceTable {
  id: string;
  name: string;
  description: string;
  current_kek_version: number;
  created_at: Generated<Date>;
  updated_at: Timestamp;
  /** Seconds between scheduled KEK rotations; null = manual rotation only. */
  rotation_period_seconds: ColumnType<number | null, number | null | undefined, number | null>;
  deletion_requested_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** Set while a crypto-shred is scheduled: the namespace is disabled until then, destroyed at it. */
  deletion_date: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface NamespaceKeyTable {
  namespace_id: string;
  version: number;
  /** KEK wrapped by the root key; null once destroyed. */
  wrapped_key: Bytes | null;
  root_version: number;
  origin: KekOrigin;
  state: KekState;
  created_at: Generated<Date>;
  /** DEK wraps under this version (pg returns bigint as a string: normalise with Number). */
  encryptions: ColumnType<string | number | bigint, never, string | number>;
  retired_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  destroyed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export type KekOrigin = 'generated' | 'external';
export type KekState = 'active' | 'retiring' | 'retired' | 'destroyed';

export interface KekRewrapJobTable {
  namespace_id: string;
  target_version: number;
  state: 'running' | 'completed';
  cursor_path: string | null;
  total: ColumnType<string | number | bigint, number, number>;
  rewrapped: ColumnType<string | number | bigint, number | undefined, number>;
  started_at: Timestamp;
  updated_at: Timestamp;
  completed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface SecretTable {
  id: string;
  namespace_id: string;
  path: string;
  current_version: number;
  max_versions: number;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface SecretVersionTable {
  secret_id: string;
  version: number;
  type: string;
  metadata: Json<Record<string, string>>;
  kek_version: number | null;
  /** DEK wrapped by a KEK version; null once the version is destroyed. */
  wrapped_dek: Bytes | null;
  ciphertext: Bytes | null;
  created_at: Generated<Date>;
  deleted_at: Date | null;
  destroyed_at: Date | null;
}

export interface TokenTable {
  accessor: string;
  identity: string;
  display_name: string;
  policies: Json<string[]>;
  created_at: Generated<Date>;
  expires_at: Date | null;
  revoked_at: Date | null;
  metadata: ColumnType<Record<string, string>, string | undefined, string>;
  renewable: ColumnType<boolean, boolean | undefined, boolean>;
  max_expires_at: Date | null;
  ttl_seconds: number | null;
}

export interface PolicyTable {
  name: string;
  rules: Json<unknown>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface UserTable {
  username: string;
  password_hash: string;
  policies: Json<string[]>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface GroupTable {
  name: string;
  policies: Json<string[]>;
  created_at: Generated<Date>;
}

export interface GroupMemberTable {
  group_name: string;
  username: string;
}

export interface AppRoleTable {
  name: string;
  role_id: string;
  config: Json<unknown>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface AppRoleSecretIdTable {
  accessor: string;
  role_name: string;
  secret_hash: Bytes;
  cidrs: Json<string[]>;
  uses_remaining: number | null;
  expires_at: Date | null;
  created_at: Generated<Date>;
}

export interface JwtIssuerTable {
  name: string;
  config: Json<unknown>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface CertRoleTable {
  name: string;
  config: Json<unknown>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface JwtRoleTable {
  name: string;
  issuer: string;
  config: Json<unknown>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface AuditLogTable {
  seq: number;
  time: Timestamp;
  request_id: string;
  identity: string | null;
  action: string;
  namespace: string | null;
  path: string | null;
  outcome: string;
  status: number;
  body: string;
  prev_hash: Bytes;
  hash: Bytes;
}

/** A request that may change state, recorded before its handler ran; deleted with its entry. */
export interface AuditIntentTable {
  request_id: string;
  /** The server process that recorded it (random per start). */
  owner: string;
  /** When the request arrived: the recovered entry's time. */
  time: Date;
  /** The database's clock, comparable across servers: how old the intent is. */
  recorded_at: Generated<Date>;
  claimed_by: string | null;
  claimed_at: Date | null;
  /** The entry as known before the handler ran (JSON). */
  draft: string;
}

export interface AuditCheckpointTable {
  seq: number;
  hash: Bytes;
  time: Date;
  signature: Bytes;
}

export interface ImportKeyTable {
  id: string;
  target: 'namespace' | 'root';
  namespace_id: string | null;
  algorithm: string;
  /** SPKI PEM of the RSA-3072 wrapping key. */
  public_key: string;
  hsm_label: string | null;
  wrapped_private_key: Bytes | null;
  root_version: number | null;
  created_by: string;
  created_at: Generated<Date>;
  expires_at: Date;
  used_at: Date | null;
}

export interface EscrowRequestTable {
  id: string;
  namespace_id: string;
  kek_version: number;
  algorithm: string;
  public_key: string;
  requested_by: string;
  approved_by: string | null;
  state: 'pending' | 'approved' | 'downloaded';
  created_at: Generated<Date>;
  expires_at: Date;
  approved_at: Date | null;
  downloaded_at: Date | null;
}

export type KmsKeyTypeName =
  | 'aes256-gcm'
  | 'xchacha20-poly1305'
  | 'hmac-sha256'
  | 'hmac-sha512'
  | 'ed25519'
  | 'ecdsa-p256'
  | 'ecdsa-p384'
  | 'rsa-2048'
  | 'rsa-3072'
  | 'rsa-4096';

/** A named key of a namespace (kms/named-keys): its configuration; the material is per version. */
export interface KmsKeyTable {
  id: string;
  namespace_id: string;
  name: string;
  type: KmsKeyTypeName;
  latest_version: number;
  min_decryption_version: ColumnType<number, number | undefined, number>;
  /** 0: no minimum of its own (min_decryption_version still applies). */
  min_encryption_version: ColumnType<number, number | undefined, number>;
  /** One-way: once true, never false again. */
  exportable: ColumnType<boolean, boolean | undefined, boolean>;
  /** One-way: permanently non-exportable. */
  export_locked: ColumnType<boolean, boolean | undefined, boolean>;
  deletion_allowed: ColumnType<boolean, boolean | undefined, boolean>;
  auto_rotate_period_seconds: ColumnType<number | null, number | null | undefined, number | null>;
  origin: 'internal' | 'external';
  hsm: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface KmsKeyVersionTable {
  key_id: string;
  version: number;
  namespace_id: string;
  /** The namespace KEK version that wraps the material. */
  kek_version: number;
  /** Key bytes (symmetric) or PKCS#8 DER (private key), wrapped by the KEK (aad.kmsKey). */
  wrapped_material: Bytes;
  created_at: Generated<Date>;
}

/** Shared login lockout state (storage/repos/login-failures.ts); client '' = across all clients. */
export interface LoginFailureTable {
  subject: string;
  client: string;
  failures: number;
  locked_until: Date | null;
  updated_at: Timestamp;
}

/** One row per background job: its fencing token (storage/job-fence.ts). */
export interface JobLeaseTable {
  job: string;
  epoch: number;
  holder: string;
  acquired_at: Timestamp;
}

export interface Database {
  login_failures: LoginFailureTable;
  job_leases: JobLeaseTable;
  import_keys: ImportKeyTable;
  escrow_requests: EscrowRequestTable;
  audit_log: AuditLogTable;
  audit_checkpoints: AuditCheckpointTable;
  audit_intents: AuditIntentTable;
  seal_config: SealConfigTable;
  system_keys: SystemKeyTable;
  namespaces: NamespaceTable;
  namespace_keys: NamespaceKeyTable;
  kek_rewrap_jobs: KekRewrapJobTable;
  secrets: SecretTable;
  secret_versions: SecretVersionTable;
  tokens: TokenTable;
  policies: PolicyTable;
  users: UserTable;
  groups: GroupTable;
  group_members: GroupMemberTable;
  approle_roles: AppRoleTable;
  approle_secret_ids: AppRoleSecretIdTable;
  jwt_issuers: JwtIssuerTable;
  jwt_roles: JwtRoleTable;
  cert_roles: CertRoleTable;
  kms_keys: KmsKeyTable;
  kms_key_versions: KmsKeyVersionTable;
}

export type NamespaceRow = Selectable<NamespaceTable>;
export type SecretVersionRow = Selectable<SecretVersionTable>;
