/**
 * Where a query runs: the database, or the transaction a caller is in. Data
 * access takes one so that a caller can put several changes in one
 * transaction (and, on PGlite's single connection, must: a fresh query would
 * wait behind the open transaction for ever).
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';

export type Executor = Kysely<Database> | Transaction<Database>;

/** What a service needs of the database itself: to open a transaction (its queries go through the repos). */
export type Transactor = Pick<Kysely<Database>, 'transaction'>;
