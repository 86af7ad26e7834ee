/**
 * Backup and restore at the table level, generic over the registry of tables
 * (wrapped-tables.ts TABLES): every table is read and written through
 * PostgreSQL's own JSON form of a row (to_jsonb / jsonb_populate_record), so
 * bytea, timestamps (to the microsecond), jsonb and numbers round-trip exactly,
 * on PostgreSQL and PGlite alike, and a column added later needs no code here.
 *
 * Rows are read in primary-key order, a page at a time (keyset), inside the
 * caller's REPEATABLE READ transaction: one snapshot however long the stream.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';

const PAGE = 500;

/** The tables the migrated schema holds (Kysely's own bookkeeping left out). */
export async function schemaTables(tx: Executor): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select table_name as name from information_schema.tables
    where table_schema = current_schema() and table_type = 'BASE TABLE' and table_name not like 'kysely_%' order by table_name`.execute(tx);
  return rows.map((r) => r.name);
}

/** The last migration applied: a backup restores only into the same schema. */
export async function schemaVersion(tx: Executor): Promise<string> {
  const { rows } = await sql<{ name: string }>`select name from kysely_migration order by name desc limit 1`.execute(tx);
  return rows[0]?.name ?? '';
}

/**
 * `tables` ordered so that a table comes after every table its foreign keys
 * reference (restore inserts parents first); ties by name, for a stable file.
 */
export async function insertOrder(tx: Executor, tables: readonly string[]): Promise<string[]> {
  const { rows } = await sql<{ child: string; parent: string }>`select c.relname as child, p.relname as parent
    from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_class p on p.oid = k.confrelid
    join pg_namespace n on n.oid = c.relnamespace
    where k.contype = 'f' and n.nspname = current_schema()`.execute(tx);
  const parents = new Map<string, Set<string>>(tables.map((t) => [t, new Set()]));
  for (const r of rows) if (r.child !== r.parent && parents.has(r.child) && parents.has(r.parent)) parents.get(r.child)!.add(r.parent);
  const out: string[] = [];
  const placed = new Set<string>();
  while (out.length < tables.length) {
    const ready = [...tables].sort().filter((t) => !placed.has(t) && [...parents.get(t)!].every((p) => placed.has(p)));
    // A cycle would need deferred constraints; none exists, but never loop for ever.
    const next = ready.length > 0 ? ready : [...tables].sort().filter((t) => !placed.has(t));
    for (const t of next) {
      placed.add(t);
      out.push(t);
    }
  }
  return out;
}

async function primaryKey(tx: Executor, table: string): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select a.attname as name from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
    where i.indrelid = ${table}::regclass and i.indisprimary
    order by array_position(i.indkey, a.attnum)`.execute(tx);
  return rows.map((r) => r.name);
}

/** Calls `onRows` with each page of `table`'s rows as JSON text, in primary-key order. */
export async function dumpTable(tx: Executor, table: string, onRows: (rows: string[]) => Promise<void>): Promise<number> {
  const key = await primaryKey(tx, table);
  if (key.length === 0) throw new Error(`table ${table} has no primary key: add one before it can be backed up`);
  const cols = sql.join(key.map((k) => sql.ref(`t.${k}`)));
  let after: unknown[] | null = null;
  let total = 0;
  for (;;) {
    const where: ReturnType<typeof sql> = after === null ? sql`true` : sql`(${cols}) > (${sql.join(after.map((v) => sql`${v}`))})`;
    const { rows } = await sql<Record<string, unknown>>`select to_jsonb(t)::text as j, ${cols} from ${sql.table(table)} t
      where ${where} order by ${cols} limit ${PAGE}`.execute(tx);
    if (rows.length === 0) return total;
    await onRows(rows.map((r) => r.j as string));
    total += rows.length;
    if (rows.length < PAGE) return total;
    const lastRow = rows[rows.length - 1]!;
    after = key.map((k) => lastRow[k]);
  }
}

/** Whether any row of seal_config exists (an initialised server), read inside the restore's transaction. */
export async function isInitialised(tx: Executor): Promise<boolean> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from seal_config`.execute(tx);
  return (rows[0]?.n ?? 0) > 0;
}

/** Empties `order`'s tables, children first, in the caller's (restore's) transaction. */
export async function clearTables(trx: Transaction<Database>, order: readonly string[]): Promise<void> {
  for (const table of [...order].reverse()) await sql`delete from ${sql.table(table)}`.execute(trx);
}

/**
 * Inserts rows (each PostgreSQL's JSON of a row) into `table` in one statement,
 * in the caller's transaction: each becomes a record of the table's own type. A
 * row that does not fit the schema fails the statement and with it the restore.
 */
export async function insertRows(trx: Transaction<Database>, table: string, rows: readonly string[]): Promise<void> {
  if (rows.length === 0) return;
  const page = `[${rows.join(',')}]`;
  await sql`insert into ${sql.table(table)} select * from jsonb_populate_recordset(null::${sql.table(table)}, ${page}::jsonb)`.execute(trx);
}

export type BackupDb = Kysely<Database>;
