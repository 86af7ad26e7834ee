/**
 * system_keys: server-internal keys (token signing, audit HMAC), versioned,
 * each wrapped by a root key version. Their plaintext never reaches the
 * database; unwrapping is the keyring's job.
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';

export interface SystemKeyRow {
  name: string;
  version: number;
  wrapped_key: Uint8Array;
  root_version: number;
}

export function systemKeysRepo(db: Kysely<Database>) {
  return {
    /** The newest version of a system key, or undefined when it was never created. */
    async latest(name: string, tx: Executor = db) {
      return tx.selectFrom('system_keys').selectAll().where('name', '=', name).orderBy('version', 'desc').executeTakeFirst();
    },

    /** The newest version of a key every initialised server has (the token signing key); throws when it is missing. */
    async require(name: string, tx: Executor = db) {
      return tx.selectFrom('system_keys').selectAll().where('name', '=', name).orderBy('version', 'desc').executeTakeFirstOrThrow();
    },

    /** Init: the first version of a key (a duplicate is a unique violation, failing the init). */
    async insert(row: SystemKeyRow, tx: Executor = db): Promise<void> {
      await tx.insertInto('system_keys').values(row).execute();
    },

    /** First use of a key on a running server: concurrent servers converge on whichever row was inserted first. */
    async insertIfAbsent(row: SystemKeyRow, tx: Executor = db): Promise<void> {
      await tx
        .insertInto('system_keys')
        .values(row)
        .onConflict((oc) => oc.columns(['name', 'version']).doNothing())
        .execute();
    },
  };
}

export type SystemKeysRepo = ReturnType<typeof systemKeysRepo>;
