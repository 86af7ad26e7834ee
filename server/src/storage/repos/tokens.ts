/**
 * tokens: the rows behind issued tokens (accessor, identity, policies). Only
 * the root token row of init is written here so far; auth/tokens.ts still
 * writes its own rows (they move here with the rest of the SQL).
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';

export function tokensRepo(db: Kysely<Database>) {
  return {
    /** The first root token's row, written by init in the same transaction as the seal configuration. */
    async insertRoot(accessor: string, tx: Executor = db): Promise<void> {
      await tx
        .insertInto('tokens')
        .values({ accessor, identity: 'root', display_name: 'root', policies: JSON.stringify(['root']) })
        .execute();
    },
  };
}

export type TokensRepo = ReturnType<typeof tokensRepo>;
