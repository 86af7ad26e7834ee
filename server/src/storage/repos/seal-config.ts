/**
 * seal_config: one row (id 1) describing the seal in effect: its type, the
 * operators' share counts, the root key version with its check values, the
 * PKCS#11 object label, and a Shamir rekey waiting for verification.
 *
 * Every function takes an optional executor: the ceremonies write this row in
 * the same transaction as the keys it describes (a crash leaves both old or
 * both new), and a caller already in a transaction must not open another.
 */
import type { Insertable, Kysely, Transaction } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database, SealConfigTable } from '../schema.js';

/** The row as the vault uses it. */
export interface SealConfig {
  sealType: string;
  shares: number;
  threshold: number;
  rootVersion: number;
  rootCheck: Uint8Array;
  hsmKeyLabel: string | null;
  recoveryCheck: Uint8Array | null;
  rootChain: Uint8Array | null;
}

/** What a root switch writes besides the new version (the seal's own fields for the new root). */
export interface RootSwitchUpdate {
  seal_type?: string;
  shares?: number;
  threshold?: number;
  root_check: Uint8Array;
  hsm_key_label: string | null;
  recovery_check?: Uint8Array | null;
  /** The new root's key bytes wrapped by the current root (software roots), for other servers to follow. */
  root_chain?: Uint8Array | null;
}

export function sealConfigRepo(db: Kysely<Database>) {
  return {
    /** The seal configuration, or null while the server is not initialised. */
    async find(tx: Executor = db): Promise<SealConfig | null> {
      const row = await tx.selectFrom('seal_config').selectAll().where('id', '=', 1).executeTakeFirst();
      return row
        ? {
            sealType: row.seal_type,
            shares: row.shares,
            threshold: row.threshold,
            rootVersion: row.root_version,
            rootCheck: row.root_check,
            hsmKeyLabel: row.hsm_key_label ?? null,
            recoveryCheck: row.recovery_check ?? null,
            rootChain: row.root_chain ?? null,
          }
        : null;
    },

    /** Init. A second init (another server at the same moment) fails here with a unique violation. */
    async insert(values: Omit<Insertable<SealConfigTable>, 'id'>, tx: Executor = db): Promise<void> {
      await tx.insertInto('seal_config').values({ id: 1, ...values }).execute();
    },

    /** A Shamir rekey waiting for its new shares: the next root key, wrapped by the root in effect. */
    async findPendingRoot(tx: Executor = db) {
      return tx
        .selectFrom('seal_config')
        .select(['pending_root', 'pending_shares', 'pending_threshold', 'root_version'])
        .where('id', '=', 1)
        .executeTakeFirstOrThrow();
    },

    /** Step 1 of a Shamir rekey; written only while `rootVersion` is still in effect (a rotation elsewhere wins). */
    async setPendingRoot(pending: { root: Uint8Array; shares: number; threshold: number }, rootVersion: number, tx: Executor = db): Promise<void> {
      await tx
        .updateTable('seal_config')
        .set({ pending_root: pending.root, pending_shares: pending.shares, pending_threshold: pending.threshold })
        .where('id', '=', 1)
        .where('root_version', '=', rootVersion)
        .execute();
    },

    /**
     * The root version in effect, with the row locked (FOR UPDATE) until the
     * transaction ends: two servers rotating at once are serialised here, and
     * the second sees the version the first committed and gives up instead of
     * rewrapping keys that are no longer under the root it holds.
     */
    async lockRootVersion(tx: Transaction<Database>): Promise<number> {
      const row = await tx.selectFrom('seal_config').select('root_version').where('id', '=', 1).forUpdate().executeTakeFirstOrThrow();
      return row.root_version;
    },

    /** Puts root `version` in effect. A pending Shamir rekey was wrapped by the old root: it ends here either way. */
    async switchRoot(update: RootSwitchUpdate, version: number, tx: Executor = db): Promise<void> {
      await tx
        .updateTable('seal_config')
        .set({ root_chain: null, ...update, root_version: version, pending_root: null, pending_shares: null, pending_threshold: null })
        .where('id', '=', 1)
        .execute();
    },
  };
}

export type SealConfigRepo = ReturnType<typeof sealConfigRepo>;
