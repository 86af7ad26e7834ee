/**
 * escrow_requests: KEK escrow exports and named-key exports of namespaces that
 * require approval, requested by one admin, approved by another, downloaded once. State changes are compare-and-set on the state
 * column (and the expiry), so two admins acting at once cannot both win.
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';

export function escrowRequestsRepo(db: Kysely<Database>) {
  return {
    async insert(
      row: {
        id: string;
        namespace_id: string;
        kek_version: number | null;
        kms_key_id?: string | null;
        kms_key_version?: number | null;
        algorithm: string;
        public_key: string;
        requested_by: string;
        expires_at: Date;
      },
      tx: Executor = db,
    ) {
      return tx
        .insertInto('escrow_requests')
        .values({ ...row, state: 'pending' })
        .returningAll()
        .executeTakeFirstOrThrow();
    },

    /** A request with its namespace's name (and, exporting a named key, the key's). */
    async findWithNamespace(id: string, tx: Executor = db) {
      return tx
        .selectFrom('escrow_requests as e')
        .innerJoin('namespaces as n', 'n.id', 'e.namespace_id')
        .leftJoin('kms_keys as k', 'k.id', 'e.kms_key_id')
        .selectAll('e')
        .select(['n.name as namespace_name', 'k.name as kms_key_name'])
        .where('e.id', '=', id)
        .executeTakeFirst();
    },

    /** What a download needs: the namespace and the requester's public key. */
    async getForDownload(id: string, tx: Executor = db) {
      return tx.selectFrom('escrow_requests').select(['namespace_id', 'public_key', 'kms_key_id']).where('id', '=', id).executeTakeFirstOrThrow();
    },

    /** A namespace's requests, newest first. */
    async listByNamespace(namespaceId: string, limit: number, tx: Executor = db) {
      return tx
        .selectFrom('escrow_requests as e')
        .leftJoin('kms_keys as k', 'k.id', 'e.kms_key_id')
        .selectAll('e')
        .select('k.name as kms_key_name')
        .where('e.namespace_id', '=', namespaceId)
        .orderBy('e.created_at', 'desc')
        .limit(limit)
        .execute();
    },

    /** pending → approved, only while pending and unexpired; false when it changed meanwhile. */
    async approve(id: string, approver: string, now: Date, tx: Executor = db): Promise<boolean> {
      const done = await tx
        .updateTable('escrow_requests')
        .set({ state: 'approved', approved_by: approver, approved_at: now })
        .where('id', '=', id)
        .where('state', '=', 'pending')
        .where('expires_at', '>', now)
        .executeTakeFirst();
      return Number(done.numUpdatedRows) === 1;
    },

    /** approved → downloaded, only once and while unexpired; false when it was already downloaded (or expired). */
    async markDownloaded(id: string, now: Date, tx: Executor = db): Promise<boolean> {
      const done = await tx
        .updateTable('escrow_requests')
        .set({ state: 'downloaded', downloaded_at: now })
        .where('id', '=', id)
        .where('state', '=', 'approved')
        .where('expires_at', '>', now)
        .executeTakeFirst();
      return Number(done.numUpdatedRows) === 1;
    },
  };
}

export type EscrowRequestsRepo = ReturnType<typeof escrowRequestsRepo>;
