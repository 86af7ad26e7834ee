/**
 * jwt_issuers and jwt_roles: OIDC/JWT federation settings, each a JSON config
 * validated by auth/jwt.ts. Logins read both rows each time (no cache here);
 * the issuer's update time keys the JWKS cache in auth/jwt.ts.
 *
 * `lockIssuer` / `lockRole` take the row FOR UPDATE inside the caller's
 * transaction, so two writers of one name run one after the other and only
 * the first creates it.
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import { transactor } from './transaction.js';

export function jwtRepo(db: Kysely<Database>) {
  return {
    transaction: transactor(db),

    // --- issuers ---

    async findIssuer(name: string, tx: Executor = db) {
      return tx.selectFrom('jwt_issuers').selectAll().where('name', '=', name).executeTakeFirst();
    },

    async issuerExists(name: string, tx: Executor = db): Promise<boolean> {
      return (await tx.selectFrom('jwt_issuers').select('name').where('name', '=', name).executeTakeFirst()) !== undefined;
    },

    async issuerNames(tx: Executor = db): Promise<string[]> {
      return (await tx.selectFrom('jwt_issuers').select('name').orderBy('name').execute()).map((r) => r.name);
    },

    /** Whether the issuer exists, locked until the transaction ends (see the header). */
    async lockIssuer(name: string, tx: Executor): Promise<boolean> {
      return (await tx.selectFrom('jwt_issuers').select('name').where('name', '=', name).forUpdate().executeTakeFirst()) !== undefined;
    },

    async insertIssuer(name: string, config: unknown, tx: Executor = db): Promise<void> {
      await tx.insertInto('jwt_issuers').values({ name, config: JSON.stringify(config) }).execute();
    },

    async updateIssuer(name: string, config: unknown, tx: Executor = db): Promise<void> {
      await tx.updateTable('jwt_issuers').set({ config: JSON.stringify(config), updated_at: new Date() }).where('name', '=', name).execute();
    },

    /** True if it existed. */
    async deleteIssuer(name: string, tx: Executor = db): Promise<boolean> {
      const result = await tx.deleteFrom('jwt_issuers').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },

    // --- roles ---

    async findRole(name: string, tx: Executor = db) {
      return tx.selectFrom('jwt_roles').selectAll().where('name', '=', name).executeTakeFirst();
    },

    /** The name of one role that uses the issuer, if any. */
    async roleUsingIssuer(issuer: string, tx: Executor = db): Promise<string | undefined> {
      return (await tx.selectFrom('jwt_roles').select('name').where('issuer', '=', issuer).executeTakeFirst())?.name;
    },

    async roleNames(tx: Executor = db): Promise<string[]> {
      return (await tx.selectFrom('jwt_roles').select('name').orderBy('name').execute()).map((r) => r.name);
    },

    /** Whether the role exists, locked until the transaction ends (see the header). */
    async lockRole(name: string, tx: Executor): Promise<boolean> {
      return (await tx.selectFrom('jwt_roles').select('name').where('name', '=', name).forUpdate().executeTakeFirst()) !== undefined;
    },

    async insertRole(name: string, issuer: string, config: unknown, tx: Executor = db): Promise<void> {
      await tx.insertInto('jwt_roles').values({ name, issuer, config: JSON.stringify(config) }).execute();
    },

    async updateRole(name: string, issuer: string, config: unknown, tx: Executor = db): Promise<void> {
      await tx.updateTable('jwt_roles').set({ issuer, config: JSON.stringify(config), updated_at: new Date() }).where('name', '=', name).execute();
    },

    /** True if it existed. */
    async deleteRole(name: string, tx: Executor = db): Promise<boolean> {
      const result = await tx.deleteFrom('jwt_roles').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

export type JwtRepo = ReturnType<typeof jwtRepo>;
