/**
 * Crypto-shredding of a namespace: its key material is destroyed after a
 * waiting period of 7–30 days, during which the namespace is disabled and the
 * schedule can be cancelled. Destroying the KEK versions makes every secret
 * under them unreadable wherever a copy of the database lives; the rows go too.
 * Runs on the KEK lifecycle's schedule (kek-lifecycle.ts), which reaches it.
 */
import type { Kysely, Transaction } from 'kysely';
import { badRequest, conflict } from '../errors.js';
import type { Keyring } from '../keyring/keyring.js';
import type { KekUsage } from '../keyring/usage.js';
import { changeEvents } from '../cluster/events.js';
import { applyLocally, publishChange, type Changes } from '../secrets/changes.js';
import { checkNamespaceName } from '../secrets/names.js';
import { namespaceKeysRepo, type NamespaceKeysRepo } from '../storage/repos/namespace-keys.js';
import { namespacesRepo, type NamespacesRepo } from '../storage/repos/namespaces.js';
import { rewrapJobsRepo, type RewrapJobsRepo } from '../storage/repos/rewrap-jobs.js';
import { secretsRepo, type SecretsRepo } from '../storage/repos/secrets.js';
import type { Database } from '../storage/schema.js';
import { notFound } from '../errors.js';
import type { ShredSchedule } from '@coffer/sdk/api';
import type { BackgroundAuditEvent } from './kek-lifecycle.js';

export const SHRED_MIN_DAYS = 7;
export const SHRED_MAX_DAYS = 30;
export const SHRED_DEFAULT_DAYS = 30;
const DAY_MS = 86_400_000;

export class NamespaceShredder {
  private readonly namespaces: Pick<NamespacesRepo, 'lockByName' | 'lockById' | 'update' | 'dueForShredding' | 'delete'>;
  private readonly namespaceKeys: Pick<NamespaceKeysRepo, 'destroyAll' | 'deleteAll'>;
  private readonly secrets: Pick<SecretsRepo, 'purgeNamespace'>;
  private readonly rewrapJobs: Pick<RewrapJobsRepo, 'delete'>;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly keyring: Pick<Keyring, 'evictNamespace'>,
    private readonly changes: Changes,
    private readonly usage: Pick<KekUsage, 'forgetNamespace'>,
    private readonly hooks: {
      onEvent: (what: string, fields: Record<string, unknown>) => void;
      /** Records a destruction in the audit log once it has committed. */
      record: (event: BackgroundAuditEvent) => Promise<void>;
      /**
       * Destroys key objects the namespace has in an HSM (HSM-resident named keys) before its
       * rows go; while it fails the namespace is left for the next sweep (shredding stays complete).
       */
      destroyDeviceKeys?: ((namespaceId: string) => Promise<void>) | undefined;
    },
  ) {
    // Built here from the database (kms/kek-lifecycle.ts constructs this class with it).
    this.namespaces = namespacesRepo(db);
    this.namespaceKeys = namespaceKeysRepo(db);
    this.secrets = secretsRepo(db);
    this.rewrapJobs = rewrapJobsRepo(db);
  }

  /** The namespace's row FOR UPDATE (writes in it finish first, new ones wait); 404 if absent. */
  private async lock(name: string, trx: Transaction<Database>) {
    const ns = await this.namespaces.lockByName(name, trx);
    if (!ns) throw notFound(`namespace "${name}" not found`);
    return ns;
  }

  /**
   * Schedules the destruction of a namespace's key material after a waiting
   * period of 7–30 days (default 30). Until then the namespace is disabled
   * (data operations answer 409 namespace_disabled) and the schedule can be
   * cancelled; at the date, `sweepShredding` destroys it.
   */
  async scheduleShred(name: string, pendingWindowDays = SHRED_DEFAULT_DAYS, now = new Date()): Promise<ShredSchedule> {
    checkNamespaceName(name);
    if (!Number.isInteger(pendingWindowDays) || pendingWindowDays < SHRED_MIN_DAYS || pendingWindowDays > SHRED_MAX_DAYS) {
      throw badRequest(`pending_window_days must be an integer from ${SHRED_MIN_DAYS} to ${SHRED_MAX_DAYS}`);
    }
    const deletionDate = new Date(now.getTime() + pendingWindowDays * DAY_MS);
    await this.db.transaction().execute(async (trx) => {
      const ns = await this.lock(name, trx);
      if (ns.deletion_date) {
        throw conflict('conflict', `namespace "${name}" is already scheduled for shredding at ${ns.deletion_date.toISOString()}`);
      }
      await this.namespaces.update(ns.id, { deletion_requested_at: now, deletion_date: deletionDate, updated_at: now }, trx);
      // Other servers drop their cached rows of this namespace (reads then see it disabled).
      await publishChange(this.changes, trx, changeEvents.namespace(name));
    });
    applyLocally(this.changes, changeEvents.namespace(name));
    return { namespace: name, deletion_requested_at: now.toISOString(), deletion_date: deletionDate.toISOString() };
  }

  /** Cancels a scheduled shredding; the namespace is enabled again, nothing was lost. */
  async cancelShred(name: string): Promise<ShredSchedule> {
    checkNamespaceName(name);
    await this.db.transaction().execute(async (trx) => {
      const ns = await this.lock(name, trx);
      if (!ns.deletion_date) throw conflict('conflict', `namespace "${name}" is not scheduled for shredding`);
      await this.namespaces.update(ns.id, { deletion_requested_at: null, deletion_date: null, updated_at: new Date() }, trx);
      await publishChange(this.changes, trx, changeEvents.namespace(name));
    });
    applyLocally(this.changes, changeEvents.namespace(name));
    return { namespace: name, deletion_requested_at: null, deletion_date: null };
  }

  /**
   * Destroys every namespace whose deletion date has come: its KEK versions'
   * wrapped bytes are overwritten and the rows marked destroyed, its secrets
   * (wrapped DEKs and ciphertexts) purged, then the namespace itself removed
   * (its name can be reused). Each namespace is one transaction. Cached KEKs
   * are zeroed here and, through the change feed, on the other servers.
   */
  async sweepShredding(now = new Date()): Promise<string[]> {
    const due = await this.namespaces.dueForShredding(now);
    const destroyed: string[] = [];
    for (const candidate of due) {
      if (this.hooks.destroyDeviceKeys) {
        try {
          // Before the transaction: the token call may be slow, and a failure must leave the rows for a retry.
          await this.hooks.destroyDeviceKeys(candidate.id);
        } catch (err) {
          this.hooks.onEvent('namespace shredding postponed: its HSM key objects could not be destroyed', { namespace: candidate.name, error: err instanceof Error ? err.message : String(err) });
          continue;
        }
      }
      const done = await this.db.transaction().execute(async (trx) => {
        const ns = await this.namespaces.lockById(candidate.id, trx);
        if (!ns?.deletion_date || ns.deletion_date.getTime() > now.getTime()) return false;
        // Erase the key material first: from here on nothing under these keys can be decrypted.
        await this.namespaceKeys.destroyAll(ns.id, now, trx);
        await this.secrets.purgeNamespace(ns.id, trx);
        await this.rewrapJobs.delete(ns.id, trx);
        await this.namespaceKeys.deleteAll(ns.id, trx);
        await this.namespaces.delete(ns.id, trx);
        await publishChange(this.changes, trx, changeEvents.namespace(candidate.name));
        await publishChange(this.changes, trx, changeEvents.namespaceKeys(ns.id));
        return true;
      });
      if (done) {
        applyLocally(this.changes, changeEvents.namespace(candidate.name));
        this.keyring.evictNamespace(candidate.id);
        this.usage.forgetNamespace(candidate.id);
        destroyed.push(candidate.name);
        this.hooks.onEvent('namespace shredded', { namespace: candidate.name });
        await this.hooks.record({ action: 'namespace.shred.destroy', namespace: candidate.name, kekVersion: null });
      }
    }
    return destroyed;
  }
}
