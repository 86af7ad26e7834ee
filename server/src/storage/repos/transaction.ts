/**
 * Opening a transaction, handed to services with their repos (as Infisical's
 * DALs carry `transaction`): a service decides where a transaction begins and
 * ends, since what it must hold together (a lock, a check, the change-feed
 * notification) is its business; the repo functions it calls inside take the
 * transaction as their executor.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../schema.js';

export type Transact = <T>(work: (tx: Transaction<Database>) => Promise<T>) => Promise<T>;

export function transactor(db: Kysely<Database>): Transact {
  return (work) => db.transaction().execute(work);
}
