/**
 * What the seal endpoints answer (/v1/sys/seal-status, init, unseal,
 * generate-root, rotate-root, seal-migrate). Wire types: their names and
 * shapes are the contract with the SDK.
 */
import type { RewrapCounts } from '../seal/rewrap.js';

export interface SealStatus {
  initialized: boolean;
  sealed: boolean;
  seal_type: string | null;
  shares: number | null;
  threshold: number | null;
  /** Shares accepted so far towards the threshold. */
  progress: number;
  /** PKCS#11 seal: shares/threshold are recovery shares; the HSM unseals. */
  recovery_seal?: boolean;
  /** The root key version in effect (rises with every rotation, migration or root import). */
  root_version?: number;
  /** PKCS#11 seal: why the last automatic unseal failed (no secrets in it). */
  seal_error?: string;
}

export type InitResult =
  | { shares: string[]; threshold: number; root_token: string }
  | { seal_type: 'pkcs11'; recovery_shares: string[]; recovery_threshold: number; root_token: string };

export interface GenerateRootProgress {
  progress: number;
  threshold: number;
  complete: boolean;
  root_token?: string;
}

export interface RotateRootResult {
  seal_type: string;
  root_version: number;
  /** Shamir: 'pending_verification' until POST /v1/sys/rotate-root/verify with the new shares. */
  state?: 'pending_verification' | 'completed';
  rewrapped?: RewrapCounts;
  /** Shamir: the new shares, shown once. */
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
