/**
 * Crypto-shredding of a namespace: its key material is destroyed after a
 * waiting period of 7–30 days, during which the namespace is disabled and the
 * schedule can be cancelled. Destroying the KEK versions makes every secret
 * under them unreadable wherever a copy of the database lives; the rows go too.
 * Runs on the KEK lifecycle's schedule (kek-lifecycle.ts), which reaches it.
 */
import type { Kysely } from 'kysely';
import { badRequest, conflict } from '../errors.js';
import type { Keyring } from '../keyring/keyring.js';
import type { KekUsage } from '../keyring/usage.js';
import { changeEvents } from '../cluster/events.js';
import { applyLocally, publishChange, type Changes } from '../secrets/changes.js';
import { lockNamespaceRow } from '../secrets/namespace-service.js';
import { checkNamespaceName } from '../secrets/names.js';
import type { Database } from '../storage/schema.js';
import type { ShredSchedule } from '@coffer/sdk/api';
import type { BackgroundAuditEvent } from './kek-lifecycle.js';

export const SHRED_MIN_DAYS = 7;
export const SHRED_MAX_DAYS = 30;
export const SHRED_DEFAULT_DAYS = 30;
const DAY_MS = 86_400_000;

export class NamespaceShredder {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly keyring: Pick<Keyring, 'evictNamespace'>,
    private readonly changes: Changes,
    private readonly usage: Pick<KekUsage, 'forgetNamespace'>,
    private readonly hooks: {
      onEvent: (what: string, fields: Record<string, unknown>) => void;
      /** Records a destruction in the audit log once it has committed. */
      record: (event: BackgroundAuditEvent) => Promise<void>;
    },
  ) {}

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
      const ns = await lockNamespaceRow(trx, name);
      if (ns.deletion_date) {
        throw conflict('conflict', `namespace "${name}" is already scheduled for shredding at ${ns.deletion_date.toISOString()}`);
      }
      await trx
        .updateTable('namespaces')
        .set({ deletion_requested_at: now, deletion_date: deletionDate, updated_at: now })
        .where('id', '=', ns.id)
        .execute();
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
      const ns = await lockNamespaceRow(trx, name);
      if (!ns.deletion_date) throw conflict('conflict', `namespace "${name}" is not scheduled for shredding`);
      await trx
        .updateTable('namespaces')
        .set({ deletion_requested_at: null, deletion_date: null, updated_at: new Date() })
        .where('id', '=', ns.id)
        .execute();
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
    const due = await this.db
      .selectFrom('namespaces')
      .select(['id', 'name'])
      .where('deletion_date', 'is not', null)
      .where('deletion_date', '<=', now)
      .execute();
    const destroyed: string[] = [];
    for (const candidate of due) {
      const done = await this.db.transaction().execute(async (trx) => {
        const ns = await trx
          .selectFrom('namespaces')
          .select(['id', 'deletion_date'])
          .where('id', '=', candidate.id)
          .forUpdate()
          .executeTakeFirst();
        if (!ns?.deletion_date || ns.deletion_date.getTime() > now.getTime()) return false;
        // Erase the key material first: from here on nothing under these keys can be decrypted.
        await trx
          .updateTable('namespace_keys')
          .set({ wrapped_key: null, state: 'destroyed', destroyed_at: now })
          .where('namespace_id', '=', ns.id)
          .execute();
        await trx
          .deleteFrom('secret_versions')
          .where('secret_id', 'in', (eb) => eb.selectFrom('secrets').select('id').where('namespace_id', '=', ns.id))
          .execute();
        await trx.deleteFrom('secrets').where('namespace_id', '=', ns.id).execute();
        await trx.deleteFrom('kek_rewrap_jobs').where('namespace_id', '=', ns.id).execute();
        await trx.deleteFrom('namespace_keys').where('namespace_id', '=', ns.id).execute();
        await trx.deleteFrom('namespaces').where('id', '=', ns.id).execute();
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
