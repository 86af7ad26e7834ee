/**
 * cert_roles: which verified client certificates a certificate login accepts
 * (a JSON config validated by auth/cert.ts). `lock` takes the row FOR UPDATE
 * inside the caller's transaction, so two writers of one role run one after
 * the other and only the first creates it.
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import { transactor } from './transaction.js';

export function certRepo(db: Kysely<Database>) {
  return {
    transaction: transactor(db),

    async find(name: string, tx: Executor = db) {
      return tx.selectFrom('cert_roles').selectAll().where('name', '=', name).executeTakeFirst();
    },

    async names(tx: Executor = db): Promise<string[]> {
      return (await tx.selectFrom('cert_roles').select('name').orderBy('name').execute()).map((r) => r.name);
    },

    /** Whether the role exists, locked until the transaction ends (see the header). */
    async lock(name: string, tx: Executor): Promise<boolean> {
      return (await tx.selectFrom('cert_roles').select('name').where('name', '=', name).forUpdate().executeTakeFirst()) !== undefined;
    },

    async insert(name: string, config: unknown, tx: Executor = db): Promise<void> {
      await tx.insertInto('cert_roles').values({ name, config: JSON.stringify(config) }).execute();
    },

    async update(name: string, config: unknown, tx: Executor = db): Promise<void> {
      await tx.updateTable('cert_roles').set({ config: JSON.stringify(config), updated_at: new Date() }).where('name', '=', name).execute();
    },

    /** True if it existed. */
    async delete(name: string, tx: Executor = db): Promise<boolean> {
      const result = await tx.deleteFrom('cert_roles').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

export type CertRepo = ReturnType<typeof certRepo>;
