/**
 * The server's state machine: uninitialised → sealed ⇄ unsealed. While sealed
 * no key is in memory and every data endpoint answers 503. Unsealing builds
 * the services around the root key (app/compose.ts); sealing zeroes them.
 *
 * The operator ceremonies live one per file beside this one (init, unseal,
 * generate-root, rotate-root, migrate-seal, follow-root); each runs inside
 * `exclusive`, so two operators (or an operator and a change from another
 * server) never interleave. They ask the seal in effect what it can do and
 * never branch on its name.
 */
import type { Kysely } from 'kysely';
import type { AuditLog } from '../audit/audit-log.js';
import type { JobScheduler, JobStatus } from '../jobs/scheduler.js';
import { sealedError } from '../errors.js';
import type { RootKey } from '../seal/root-key.js';
import type { ImportDevice, Seal, SealCapabilities, Seals } from '../seal/seal.js';
import type { ChangeFeed } from '../storage/change-feed.js';
import type { Repos } from '../storage/repos/index.js';
import type { SealConfig } from '../storage/repos/seal-config.js';
import type { Database } from '../storage/schema.js';
import type { Services } from './services.js';
import { ShareSlot } from './shares.js';
import type { SealStatus } from './types.js';

export interface VaultDeps {
  db: Kysely<Database>;
  repos: Pick<Repos, 'sealConfig' | 'systemKeys' | 'tokens'>;
  seals: Seals;
  /** Root switches tell the other servers sharing the database (cluster/dispatch.ts). */
  changes: Pick<ChangeFeed, 'publish'>;
  audit: Pick<AuditLog, 'checkpointNow' | 'close'>;
  /** Setup: the services around a root key (keyring → services), and their background jobs to start once in place. */
  open(root: RootKey): Promise<{ services: Services; jobs: Pick<JobScheduler, 'start' | 'stop' | 'status'> }>;
  /** Teardown steps that run at every seal before the services are dropped, in order. */
  preSeal: ReadonlyArray<() => void>;
  /** Told of each state change (for the server log); never given key material. */
  onTransition?: (state: 'initialised' | 'unsealed' | 'sealed', fields: Record<string, unknown>) => void;
}

export class Vault {
  /** seal_config as last read; null while not initialised. */
  config: SealConfig | null = null;
  /** The services while unsealed. */
  unsealed: Services | null = null;
  /** Unseal shares collected so far, and generate-root's, apart. */
  readonly shares = { unseal: new ShareSlot(), generateRoot: new ShareSlot() };
  /** Why the last automatic unseal (or following another server's root) failed; shown while sealed. */
  sealError: string | null = null;
  /** Sealed through POST /v1/sys/seal: an auto-unseal seal then opens only with the recovery shares (or a restart). */
  sealedByOperator = false;
  /** The background jobs of the services while unsealed (jobs/scheduler.ts). */
  private jobs: Pick<JobScheduler, 'start' | 'stop' | 'status'> | null = null;
  /** Serialises the transitions so two operators cannot interleave them. */
  private transition: Promise<unknown> = Promise.resolve();
  /** When seal_config was last looked at while uninitialised (lookForInit). */
  private lastLook = 0;

  constructor(readonly deps: VaultDeps) {}

  get db(): Kysely<Database> {
    return this.deps.db;
  }

  /** Reads the seal configuration; the server starts sealed. */
  async load(): Promise<void> {
    this.config = await this.deps.repos.sealConfig.find();
  }

  /**
   * While this server has seen no init, reads seal_config again (throttled to once a second
   * unless `force`): an init on another server shows here without a restart, even when its
   * change notification was missed. True when this call found it. Never turns a configuration
   * back into none (an init in this process may have loaded one meanwhile).
   */
  async lookForInit(force = false): Promise<boolean> {
    const now = Date.now();
    if (this.config || (!force && now - this.lastLook < 1000)) return false;
    this.lastLook = now;
    const found = await this.deps.repos.sealConfig.find();
    if (!found || this.config) return false;
    this.config = found;
    return true;
  }

  /** The seal a configuration names. */
  sealOf(config: SealConfig): Seal {
    return this.deps.seals.of(config.sealType);
  }

  get isSealed(): boolean {
    return this.unsealed === null;
  }

  status(): SealStatus {
    const c = this.config;
    return {
      initialized: c !== null,
      sealed: this.unsealed === null,
      seal_type: c?.sealType ?? null,
      shares: c?.shares ?? null,
      threshold: c?.threshold ?? null,
      progress: this.shares.unseal.progress,
      ...(c ? { root_version: c.rootVersion } : {}),
      ...(c && this.sealOf(c).capabilities.recoveryKeys ? { recovery_seal: true } : {}),
      ...(this.sealError && this.unsealed === null ? { seal_error: this.sealError } : {}),
    };
  }

  /** This server's background jobs and what each did last (empty while sealed). */
  jobStatus(): JobStatus[] {
    return this.jobs?.status() ?? [];
  }

  /** The unsealed services, or 503 sealed. */
  services(): Services {
    if (!this.unsealed) throw sealedError();
    return this.unsealed;
  }

  /** Where BYOK wrapping keys live (null: in software, wrapped by the root key). */
  importDevice(): ImportDevice | null {
    return this.config ? this.sealOf(this.config).importDevice() : null;
  }

  /** What the seal in effect can do; null while not initialised. */
  capabilities(): SealCapabilities | null {
    return this.config ? this.sealOf(this.config).capabilities : null;
  }

  /** Unseals: the services are built around `root` (which they own from here on), then their jobs start. */
  async unsealWith(root: RootKey): Promise<void> {
    const opened = await this.deps.open(root);
    this.unsealed = opened.services;
    this.jobs = opened.jobs;
    opened.jobs.start();
    this.deps.onTransition?.('unsealed', { seal_type: this.config?.sealType, root_version: this.config?.rootVersion });
  }

  /** Zeroes every key in memory; data endpoints answer 503 until the next unseal. */
  seal(): Promise<SealStatus> {
    return this.exclusive(async () => {
      // Sign the chain's head while the key is still here.
      await this.deps.audit.checkpointNow().catch(() => undefined);
      await this.jobs?.stop();
      const wasUnsealed = this.unsealed !== null;
      this.dropKeys();
      // Auto-unseal seals: a deliberate seal is not undone by an anonymous POST /v1/sys/unseal {}.
      this.sealedByOperator = true;
      if (wasUnsealed) this.deps.onTransition?.('sealed', { by: 'operator' });
      return this.status();
    });
  }

  /** Flushes and checkpoints the audit log, then zeroes every key. */
  async close(): Promise<void> {
    await this.jobs?.stop();
    await this.deps.audit.close();
    this.dropKeys();
    this.deps.seals.close();
  }

  /** Teardown, in order (OpenBao's preSeal): the shared steps, the share collections, then the services. */
  dropKeys(): void {
    for (const step of this.deps.preSeal) step();
    this.shares.unseal.reset();
    this.shares.generateRoot.reset();
    const services = this.unsealed;
    void this.jobs?.stop();
    this.jobs = null;
    if (services) {
      services.keyring.destroy();
      services.tokens.destroy();
      services.policies.clear();
      this.unsealed = null;
    }
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.transition.then(fn, fn);
    this.transition = run.catch(() => undefined);
    return run;
  }
}
