/**
 * The face the HTTP layer, the start-up code and the tests see: the vault's
 * state and its operator ceremonies, one call each. Nothing is decided here;
 * the state machine is vault/vault.ts, each ceremony is its own file in
 * vault/, and everything is built in app/compose.ts.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Kysely, Transaction } from 'kysely';
import type { NodeJobStatus } from '@coffer/sdk/api';
import type { AuditLog } from './audit/audit-log.js';
import type { SecretReadCache } from './secrets/read-cache.js';
import type { Pkcs11Token } from './seal/pkcs11.js';
import type { SealType } from './seal/seal.js';
import { CofferError, conflict } from './errors.js';
import { pingDatabase, type DatabaseCheck } from './storage/db.js';
import type { Database } from './storage/schema.js';
import { followInit, followRoot } from './vault/follow-root.js';
import { generateRoot } from './vault/generate-root.js';
import { init } from './vault/init.js';
import { migrateSeal } from './vault/migrate-seal.js';
import { importRoot, rotateRoot, verifyRotateRoot } from './vault/rotate-root.js';
import type { Services } from './vault/services.js';
import type { GenerateRootProgress, InitResult, RotateRootResult, SealMigrateResult, SealStatus } from './vault/types.js';
import { autoUnseal, resetUnseal, unseal } from './vault/unseal.js';
import { verifyKeysOpen, writeBackup } from './vault/backup.js';
import { restore } from './vault/restore.js';
import { DEFAULT_MAX_RESTORE_BYTES, RestoreSpool, type RestoreUploadLimits } from './vault/restore-spool.js';
import type { BackupVerifyResult, RestoreResult } from '@coffer/sdk/api';
import type { Vault } from './vault/vault.js';

export type { GenerateRootProgress, InitResult, RotateRootResult, SealMigrateResult, SealStatus, Services };

/** Runs inside a ceremony's transaction just before commit (its audit entry): if it throws, nothing changes. */
type BeforeCommit = (trx: Transaction<Database>) => Promise<void>;

/** Which server this is, in health, readiness and metrics: host, process and a per-start suffix. */
export function newNodeId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}


export class CofferCore {
  /** Which server this is (newNodeId). */
  readonly node = newNodeId();

  constructor(
    private readonly vault: Vault,
    readonly audit: AuditLog,
    /** Lives across seal/unseal; emptied on both, and kept in step with other servers by the change feed. */
    readonly readCache: SecretReadCache,
    /** PGlite's one connection must not be held while a client reads a backup slowly. */
    private readonly storageKind: 'postgres' | 'pglite' = 'pglite',
    /** How large a restore upload may be, and where it is spooled. */
    private readonly restoreLimits: RestoreUploadLimits = { maxBytes: DEFAULT_MAX_RESTORE_BYTES },
  ) {}

  get db(): Kysely<Database> {
    return this.vault.db;
  }

  /** Readiness: whether the database answers `select 1` within `timeoutMs`. */
  pingDatabase(timeoutMs: number): Promise<DatabaseCheck> {
    return pingDatabase(this.db, timeoutMs);
  }

  /** Reads the seal configuration; the server starts sealed. */
  load(): Promise<void> {
    return this.vault.load();
  }

  get isSealed(): boolean {
    return this.vault.isSealed;
  }

  status(): SealStatus {
    return this.vault.status();
  }

  /**
   * The status endpoints call this first: while uninitialised, seal_config is looked at again
   * (at most once a second), so an init on another server shows even without its notification.
   * A database that does not answer leaves the status as known.
   */
  async lookForInit(): Promise<void> {
    if (this.vault.config) return;
    await followInit(this.vault, { force: false }).catch(() => undefined);
  }

  /** This server's background jobs (none while sealed): which of them it is running, and ran last. */
  jobs(): NodeJobStatus[] {
    return this.vault.jobStatus().map((j) => ({
      name: j.name,
      running: j.running,
      last: j.lastOutcome,
      last_run_at: j.lastRunAt?.toISOString() ?? null,
    }));
  }

  /** The unsealed services, or 503 sealed. */
  services(): Services {
    return this.vault.services();
  }

  /** The root key, the operators' shares and the first root token (vault/init.ts). */
  init(shares: number, threshold: number, beforeCommit?: BeforeCommit): Promise<InitResult> {
    return init(this.vault, shares, threshold, beforeCommit);
  }

  /** One unseal share (vault/unseal.ts). */
  unseal(shareText: string): Promise<SealStatus> {
    return unseal(this.vault, shareText);
  }

  /** Unseals with the root key the seal stores (vault/unseal.ts). */
  autoUnseal(): Promise<SealStatus> {
    return autoUnseal(this.vault);
  }

  /** Abandons a partial unseal. */
  resetUnseal(): Promise<SealStatus> {
    return resetUnseal(this.vault);
  }

  /** Zeroes every key in memory; data endpoints answer 503 until the next unseal. */
  seal(): Promise<SealStatus> {
    return this.vault.seal();
  }

  /** One share towards a new root token, or null to abandon (vault/generate-root.ts). */
  generateRoot(shareText: string | null): Promise<GenerateRootProgress> {
    return generateRoot(this.vault, shareText);
  }

  /** A new root key version (vault/rotate-root.ts). */
  rotateRoot(
    input: { shares?: string[] | undefined; newShares?: number | undefined; newThreshold?: number | undefined },
    beforeCommit?: BeforeCommit,
  ): Promise<RotateRootResult> {
    return rotateRoot(this.vault, input, beforeCommit);
  }

  /** The new shares of a pending rekey put it in effect (vault/rotate-root.ts). */
  verifyRotateRoot(shareTexts: string[], beforeCommit?: BeforeCommit): Promise<RotateRootResult> {
    return verifyRotateRoot(this.vault, shareTexts, beforeCommit);
  }

  /** A customer's key, unwrapped into the seal's device, as the next root key (vault/rotate-root.ts). */
  importRoot(unwrapInto: (token: Pkcs11Token, label: string) => Promise<Buffer>, beforeCommit?: BeforeCommit): Promise<RotateRootResult> {
    return importRoot(this.vault, unwrapInto, beforeCommit);
  }

  /** Shamir ⇄ PKCS#11 with the operators' shares (vault/migrate-seal.ts). */
  migrateSeal(to: SealType, shareTexts: string[], beforeCommit?: BeforeCommit): Promise<SealMigrateResult> {
    return migrateSeal(this.vault, to, shareTexts, beforeCommit);
  }

  /** Follows a root key another server put in effect, or seals (vault/follow-root.ts). */
  followRoot(): Promise<void> {
    return followRoot(this.vault);
  }

  /** A consistent snapshot of everything stored, still wrapped by the root key (vault/backup.ts). */
  async backup(write: (chunk: string) => Promise<void>): Promise<void> {
    const root = this.services().keyring.rootKey;
    await writeBackup(this.db, root, write, { stream: this.storageKind === 'postgres' });
  }

  /** Proves every wrapped key of a backup opens under the root key in effect; counts only (vault/backup.ts). */
  /**
   * A backup upload proven against this server's root key: spooled to disk and checked as it
   * arrives (like a restore's), then its wrapped keys and values opened from the spool.
   */
  async verifyBackup(body: AsyncIterable<Buffer>): Promise<BackupVerifyResult> {
    // Sealed: refused before a byte is spooled.
    const root = this.services().keyring.rootKey;
    const upload = await RestoreSpool.receive(body, this.restoreLimits);
    try {
      // The server's own root key proves it: shares sent along would have been read for nothing.
      if (upload.shares) throw new CofferError('invalid_request', 'verify uses this server\'s root key: send the backup file alone, without shares');
      return await verifyKeysOpen(upload.backup, root, (table) => upload.tableRows(table));
    } finally {
      await upload.close();
    }
  }

  /**
   * A backup upload (its envelope line, then the backup) into this uninitialised server: spooled to
   * disk and checked as it arrives, then restored (vault/restore-spool.ts, vault/restore.ts).
   */
  async restore(body: AsyncIterable<Buffer>, beforeCommit?: BeforeCommit): Promise<RestoreResult> {
    // Refused before a byte is spooled (checked again, for real, inside the restore).
    if (this.vault.config) throw conflict('already_initialized', 'Coffer is already initialised: restore only into a new, uninitialised server');
    const upload = await RestoreSpool.receive(body, this.restoreLimits);
    try {
      return await restore(this.vault, upload, async (trx) => {
        // The restore's own entry goes on top of the restored chain, not of what this server wrote before.
        this.audit.forgetHead();
        await beforeCommit?.(trx);
      });
    } finally {
      this.audit.forgetHead();
      await upload.close();
    }
  }

  /** The open token for BYOK (null with a seal that has no device). */
  hsmForImports(): Pkcs11Token | null {
    return this.vault.importDevice()?.token ?? null;
  }

  /** Flushes and checkpoints the audit log, then zeroes every key and the kept bulk-read values. */
  async close(): Promise<void> {
    try {
      await this.vault.close();
    } finally {
      this.readCache.close();
    }
  }
}
