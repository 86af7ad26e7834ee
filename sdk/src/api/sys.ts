/** `/v1/sys`: the seal, its ceremonies and health. */

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
  /** PKCS#11 seal: why the last automatic unseal failed (no secrets in it). */
  seal_error?: string;
}

export interface HealthStatus {
  initialized: boolean;
  sealed: boolean;
  /** Always false: every server sharing a database is active. */
  standby: boolean;
  /** Seconds since the epoch, as the server's clock sees it. */
  server_time_utc: number;
  /** Which server answered (host, process, a per-start suffix): behind a load balancer, tells them apart. */
  node: string;
  /** Its background jobs (none while sealed): each runs on one server at a time, under a cluster-wide lock. */
  jobs: NodeJobStatus[];
}

/** A background job as one server sees it. */
export interface NodeJobStatus {
  name: string;
  /** A run is in progress on this server (it holds the job's cluster-wide lock). */
  running: boolean;
  /** This server's last attempt: ok/failed (it ran the job), busy (another server held the lock), null (none yet). */
  last: 'ok' | 'failed' | 'busy' | null;
  last_run_at: string | null;
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

/** What a root rotation moved to the new root key. */
export interface RewrapCounts {
  keks: number;
  system_keys: number;
  import_keys: number;
}

export interface RotateRootResult {
  seal_type: string;
  root_version: number;
  /** Shamir: 'pending_verification' until POST /v1/sys/rotate-root/verify with the new shares. */
  state?: 'pending_verification' | 'completed';
  rewrapped?: RewrapCounts;
  /** Shamir, step 1: the new shares, shown once. */
  shares?: string[];
  threshold?: number;
  /** PKCS#11: the label of the new root key object. */
  key_label?: string;
}

export interface SealMigrateResult {
  seal_type: string;
  root_version: number;
  rewrapped: RewrapCounts;
  message: string;
}

export interface GenerateRootProgress {
  progress: number;
  threshold: number;
  complete: boolean;
  /** Only in the answer that completes the threshold. */
  root_token?: string;
}
