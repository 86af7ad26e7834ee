/**
 * tokens: the rows behind issued tokens (accessor = the JWT's `jti`, identity,
 * policies, expiry, renewability, revocation). Token checks never read here
 * (auth/tokens.ts keeps the revoked accessors in memory); logins, renewals,
 * lookups and revocations do.
 */
import { sql, type Insertable, type Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database, TokenTable } from '../schema.js';
import { transactor } from './transaction.js';

export function tokensRepo(db: Kysely<Database>) {
  return {
    transaction: transactor(db),

    /** A root token's row (no expiry): init writes it in the same transaction as the seal configuration. */
    async insertRoot(accessor: string, tx: Executor = db): Promise<void> {
      await tx
        .insertInto('tokens')
        .values({ accessor, identity: 'root', display_name: 'root', policies: JSON.stringify(['root']) })
        .execute();
    },

    async insert(row: Insertable<TokenTable>, tx: Executor = db): Promise<void> {
      await tx.insertInto('tokens').values(row).execute();
    },

    async find(accessor: string, tx: Executor = db) {
      return tx.selectFrom('tokens').selectAll().where('accessor', '=', accessor).executeTakeFirst();
    },

    /** Revoked accessors whose tokens have not expired yet (an expired token fails verification anyway). */
    async revokedUnexpired(now: Date, tx: Executor = db): Promise<string[]> {
      const rows = await tx
        .selectFrom('tokens')
        .select('accessor')
        .where('revoked_at', 'is not', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .execute();
      return rows.map((r) => r.accessor);
    },

    /** A renewal's new expiry; a token revoked meanwhile stays revoked (and keeps its old expiry). */
    async extend(accessor: string, expiresAt: Date, tx: Executor = db): Promise<void> {
      await tx.updateTable('tokens').set({ expires_at: expiresAt }).where('accessor', '=', accessor).where('revoked_at', 'is', null).execute();
    },

    /** Marks one accessor revoked (by the database's clock); true if it was live. */
    async revoke(accessor: string, tx: Executor = db): Promise<boolean> {
      const result = await tx
        .updateTable('tokens')
        .set({ revoked_at: sql<Date>`now()` })
        .where('accessor', '=', accessor)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    /**
     * Revokes every live token of `identity`, or with `prefix` of every identity
     * starting with it (LIKE, its wildcards escaped); returns their accessors.
     */
    async revokeIdentity(identity: string, prefix: boolean, tx: Executor = db): Promise<string[]> {
      const pattern = `${identity.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const rows = await tx
        .updateTable('tokens')
        .set({ revoked_at: sql<Date>`now()` })
        .where((eb) => (prefix ? eb('identity', 'like', pattern) : eb('identity', '=', identity)))
        .where('revoked_at', 'is', null)
        .returning('accessor')
        .execute();
      return rows.map((r) => r.accessor);
    },
  };
}

export type TokensRepo = ReturnType<typeof tokensRepo>;
