/**
 * policies: named policy documents (their rules as JSON). Parsing and
 * compiling them is auth/policy-store.ts's business; every server holds them
 * compiled in memory and reloads on change notifications.
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import { transactor } from './transaction.js';

export function policiesRepo(db: Kysely<Database>) {
  return {
    transaction: transactor(db),

    async all(tx: Executor = db) {
      return tx.selectFrom('policies').select(['name', 'rules']).execute();
    },

    async rules(name: string, tx: Executor = db) {
      return tx.selectFrom('policies').select(['name', 'rules']).where('name', '=', name).executeTakeFirst();
    },

    async find(name: string, tx: Executor = db) {
      return tx.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirst();
    },

    async names(tx: Executor = db): Promise<string[]> {
      const rows = await tx.selectFrom('policies').select('name').orderBy('name').execute();
      return rows.map((r) => r.name);
    },

    /**
     * Whether the policy exists, its row locked (FOR UPDATE) until the
     * transaction ends, so a concurrent write or delete of it waits for this
     * one. A name with no row yet locks nothing: two first writers both see
     * "absent", and `upsert` turns the second insert into an update.
     */
    async lock(name: string, tx: Executor): Promise<boolean> {
      return (await tx.selectFrom('policies').select('name').where('name', '=', name).forUpdate().executeTakeFirst()) !== undefined;
    },

    /** Creates or replaces the policy's rules. */
    async upsert(name: string, rules: unknown, tx: Executor = db): Promise<void> {
      await tx
        .insertInto('policies')
        .values({ name, rules: JSON.stringify(rules) })
        .onConflict((oc) => oc.column('name').doUpdateSet({ rules: JSON.stringify(rules), updated_at: new Date() }))
        .execute();
    },

    /** True if it existed. */
    async delete(name: string, tx: Executor = db): Promise<boolean> {
      const result = await tx.deleteFrom('policies').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

export type PoliciesRepo = ReturnType<typeof policiesRepo>;
