/**
 * approle_roles and approle_secret_ids: AppRole roles (name, role_id, config
 * as JSON) and their secret_ids, stored only as SHA-256 hashes and found by
 * hash at login. Checking a secret_id (expiry, CIDRs, constant-time compare)
 * is auth/approle.ts's business.
 */
import { sql, type Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import { transactor } from './transaction.js';

export interface NewSecretId {
  accessor: string;
  roleName: string;
  secretHash: Uint8Array;
  cidrs: string[];
  usesRemaining: number | null;
  expiresAt: Date | null;
}

export function approleRepo(db: Kysely<Database>) {
  return {
    transaction: transactor(db),

    // --- roles ---

    async find(name: string, tx: Executor = db) {
      return tx.selectFrom('approle_roles').selectAll().where('name', '=', name).executeTakeFirst();
    },

    /** The role a login names; read without a lock (the secret_id is the row a login locks). */
    async findByRoleId(roleId: string, tx: Executor = db) {
      return tx.selectFrom('approle_roles').selectAll().where('role_id', '=', roleId).executeTakeFirst();
    },

    async names(tx: Executor = db): Promise<string[]> {
      const rows = await tx.selectFrom('approle_roles').select('name').orderBy('name').execute();
      return rows.map((r) => r.name);
    },

    /**
     * Whether the role exists, its row locked (FOR UPDATE) until the
     * transaction ends: two writers of one role run one after the other, and
     * only the first creates it (and gives it a role_id).
     */
    async lock(name: string, tx: Executor): Promise<boolean> {
      return (await tx.selectFrom('approle_roles').select('name').where('name', '=', name).forUpdate().executeTakeFirst()) !== undefined;
    },

    async insert(role: { name: string; roleId: string; config: unknown }, tx: Executor = db): Promise<void> {
      await tx.insertInto('approle_roles').values({ name: role.name, role_id: role.roleId, config: JSON.stringify(role.config) }).execute();
    },

    async updateConfig(name: string, config: unknown, tx: Executor = db): Promise<void> {
      await tx.updateTable('approle_roles').set({ config: JSON.stringify(config), updated_at: new Date() }).where('name', '=', name).execute();
    },

    /** Its secret_ids go with it (foreign key, on delete cascade). */
    async delete(name: string, tx: Executor = db): Promise<void> {
      await tx.deleteFrom('approle_roles').where('name', '=', name).execute();
    },

    // --- secret_ids ---

    /**
     * The secret_id with this hash, locked (FOR UPDATE) until the login's
     * transaction ends: of two logins spending the last use of one secret_id,
     * the second waits, then finds the row gone (or its count lowered).
     */
    async lockSecretByHash(hash: Uint8Array, tx: Executor) {
      return tx.selectFrom('approle_secret_ids').selectAll().where('secret_hash', '=', hash).forUpdate().executeTakeFirst();
    },

    /** Spends one use of a secret_id locked with `lockSecretByHash`; `last` deletes it (its final use). */
    async spendUse(accessor: string, last: boolean, tx: Executor): Promise<void> {
      if (last) await tx.deleteFrom('approle_secret_ids').where('accessor', '=', accessor).execute();
      else await tx.updateTable('approle_secret_ids').set({ uses_remaining: sql`uses_remaining - 1` }).where('accessor', '=', accessor).execute();
    },

    async insertSecretId(s: NewSecretId, tx: Executor = db): Promise<void> {
      await tx
        .insertInto('approle_secret_ids')
        .values({
          accessor: s.accessor,
          role_name: s.roleName,
          secret_hash: s.secretHash,
          cidrs: JSON.stringify(s.cidrs),
          uses_remaining: s.usesRemaining,
          expires_at: s.expiresAt,
        })
        .execute();
    },

    /** The role's secret_ids that have not expired by `now`, oldest first (never the hashes). */
    async liveSecretIds(roleName: string, now: Date, tx: Executor = db) {
      return tx
        .selectFrom('approle_secret_ids')
        .select(['accessor', 'cidrs', 'uses_remaining', 'expires_at', 'created_at'])
        .where('role_name', '=', roleName)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .orderBy('created_at')
        .execute();
    },

    /** True if the role had a secret_id with this accessor. */
    async deleteSecretId(roleName: string, accessor: string, tx: Executor = db): Promise<boolean> {
      const result = await tx.deleteFrom('approle_secret_ids').where('role_name', '=', roleName).where('accessor', '=', accessor).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

export type AppRoleRepo = ReturnType<typeof approleRepo>;
