/**
 * The rows a root key version wraps, read and rewritten through the registry
 * (wrapped-tables.ts) rather than per table: root rotation moves every one of
 * them, and a table added to the registry is moved without another query here.
 *
 * Both run in the root switch's transaction (or, for stragglers, one row at a
 * time after it) and take no lock of their own: the switch holds seal_config
 * FOR UPDATE, and `replace` is guarded by the root version it read, so a row
 * someone else already moved is left as it is.
 */
import { sql, type Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import type { WrappedColumnShape } from '../wrapped-tables.js';

/** One wrapped value: its key and AAD columns, the bytes, and the root version that wrapped them. */
export interface RootWrappedRow {
  values: Readonly<Record<string, string | number>>;
  wrapped: Uint8Array;
  rootVersion: number;
}

const columnsOf = (entry: WrappedColumnShape) => [...new Set([...entry.key, ...entry.aad.fields])];

export function rootWrappedRepo(db: Kysely<Database>) {
  return {
    /**
     * Every row of `entry` holding wrapped bytes (still in use), or only those
     * under root version `onlyVersion` (the stragglers pass after a switch).
     */
    async rows(entry: WrappedColumnShape, onlyVersion: number | null, tx: Executor = db): Promise<RootWrappedRow[]> {
      const fields = columnsOf(entry);
      const selected = sql.join([...fields, entry.column, entry.rootVersion].map((c) => sql.ref(c)));
      const conditions = [sql`${sql.ref(entry.column)} is not null`];
      if (entry.onlyWhileNull) conditions.push(sql`${sql.ref(entry.onlyWhileNull)} is null`);
      if (onlyVersion !== null) conditions.push(sql`${sql.ref(entry.rootVersion)} = ${onlyVersion}`);
      const { rows } = await sql<Record<string, unknown>>`select ${selected} from ${sql.table(entry.table)} where ${sql.join(conditions, sql` and `)}`.execute(tx);
      return rows.map((row) => ({
        values: Object.fromEntries(fields.map((f) => [f, row[f] as string | number])),
        wrapped: row[entry.column] as Uint8Array,
        rootVersion: Number(row[entry.rootVersion]),
      }));
    },

    /** Puts the rewrapped bytes back under `toVersion`, only if the row is still under the version it was read with. */
    async replace(entry: WrappedColumnShape, row: RootWrappedRow, wrapped: Uint8Array, toVersion: number, tx: Executor = db): Promise<void> {
      const conditions = [...entry.key.map((k) => sql`${sql.ref(k)} = ${row.values[k]}`), sql`${sql.ref(entry.rootVersion)} = ${row.rootVersion}`];
      await sql`update ${sql.table(entry.table)} set ${sql.ref(entry.column)} = ${wrapped}, ${sql.ref(entry.rootVersion)} = ${toVersion}
        where ${sql.join(conditions, sql` and `)}`.execute(tx);
    },
  };
}

export type RootWrappedRepo = ReturnType<typeof rootWrappedRepo>;
