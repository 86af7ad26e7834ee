// The registry of what is wrapped by what (server/src/storage/wrapped-tables.ts) against the schema
// the migrations really build: every table is classified, every column that can hold key material
// or ciphertext (bytea, or a name that says so) is declared with the key that protects it, and the
// AAD the registry declares is the AAD the code builds. A table or bytes column added by a later
// migration fails here until it is classified — root rotation and (later) backup read this list.
import { sql, type Kysely } from 'kysely';
import { aad } from '@coffer/server/crypto/context';
import { ROOT_WRAPPED_AAD } from '@coffer/server/seal/rewrap';
import { openStorage, type Storage } from '@coffer/server/storage/db';
import type { Database } from '@coffer/server/storage/schema';
import { KEK_WRAPPED, ROOT_WRAPPED, TABLES } from '@coffer/server/storage/wrapped-tables';

interface Column {
  table: string;
  column: string;
  type: string;
}

/** Kysely's own bookkeeping, not Coffer's data. */
const MIGRATOR_TABLES = new Set(['kysely_migration', 'kysely_migration_lock']);
/** Columns whose name says they hold key material, whatever their type. */
const KEYISH_NAME = /(^|_)(wrapped|ciphertext|private|dek)(_|$)/;

async function schemaColumns(db: Kysely<Database>): Promise<Column[]> {
  const { rows } = await sql<{ table_name: string; column_name: string; data_type: string }>`
    select table_name, column_name, data_type from information_schema.columns
    where table_schema = 'public' order by table_name, ordinal_position`.execute(db);
  return rows.filter((r) => !MIGRATOR_TABLES.has(r.table_name)).map((r) => ({ table: r.table_name, column: r.column_name, type: r.data_type }));
}

/** Where the registry declares a column, or null. */
function declaration(table: string, column: string): string | null {
  if (ROOT_WRAPPED.some((e) => e.table === table && e.column === column)) return 'root-wrapped';
  if (KEK_WRAPPED.some((e) => e.table === table && e.column === column)) return 'kek-wrapped';
  if (KEK_WRAPPED.some((e) => e.table === table && 'encrypts' in e && e.encrypts?.column === column)) return 'dek-encrypted';
  const cls = (TABLES as Record<string, (typeof TABLES)[keyof typeof TABLES] | undefined>)[table];
  if (cls?.kind === 'seal' && column in cls.columns) return 'seal';
  if (cls?.kind === 'plain' && cls.bytes && column in cls.bytes) return 'plain bytes';
  return null;
}

/** Everything in the schema the registry does not account for (empty: complete). */
function unclassified(columns: Column[]): string[] {
  const problems: string[] = [];
  const tables = new Set(columns.map((c) => c.table));
  for (const table of tables) if (!(table in TABLES)) problems.push(`table ${table} is not classified in TABLES`);
  for (const table of Object.keys(TABLES)) if (!tables.has(table)) problems.push(`TABLES names ${table}, which the schema does not have`);
  for (const c of columns) {
    if ((c.type === 'bytea' || KEYISH_NAME.test(c.column)) && declaration(c.table, c.column) === null) {
      problems.push(`${c.table}.${c.column} (${c.type}) may hold key material and is not declared`);
    }
  }
  return problems;
}

const encode = (parts: Array<string | number>) => new TextEncoder().encode(JSON.stringify(['coffer/v1', ...parts]));

describe('the registry of wrapped tables', () => {
  let storage: Storage;
  let columns: Column[];

  beforeAll(async () => {
    storage = await openStorage({ dataDir: 'memory://' });
    columns = await schemaColumns(storage.db);
  });
  afterAll(async () => {
    await storage?.close();
  });

  it('reads the migrated schema', () => {
    expect(columns.length).toBeGreaterThan(50);
    expect(columns).toContainEqual({ table: 'namespace_keys', column: 'wrapped_key', type: 'bytea' });
  });

  it('classifies every table and declares every column that may hold key material', () => {
    expect(unclassified(columns)).toEqual([]);
  });

  it('names only columns that exist, in tables of the matching kind', () => {
    const has = (table: string, column: string) => columns.some((c) => c.table === table && c.column === column);
    const missing: string[] = [];
    for (const e of ROOT_WRAPPED) {
      expect(TABLES[e.table].kind).toBe('root-wrapped');
      const named: string[] = [...e.key, e.column, e.rootVersion, ...e.aad.fields, ...[(e as { onlyWhileNull?: string }).onlyWhileNull ?? e.column]];
      for (const col of named) if (!has(e.table, col)) missing.push(`${e.table}.${col}`);
    }
    for (const e of KEK_WRAPPED) {
      expect(TABLES[e.table].kind).toBe('kek-wrapped');
      for (const col of [...e.key, e.column, e.kekVersion, ...('encrypts' in e && e.encrypts ? [e.encrypts.column] : []), e.namespace.join[0]]) if (!has(e.table, col)) missing.push(`${e.table}.${col}`);
      for (const col of [e.namespace.join[1], e.namespace.column]) if (!has(e.namespace.via, col)) missing.push(`${e.namespace.via}.${col}`);
    }
    expect(missing).toEqual([]);
    // Each root- or KEK-wrapped table has its registry entry.
    for (const [table, cls] of Object.entries(TABLES)) {
      if (cls.kind === 'root-wrapped') expect(ROOT_WRAPPED.map((e) => e.table as string)).toContain(table);
      if (cls.kind === 'kek-wrapped') expect(KEK_WRAPPED.map((e) => e.table as string)).toContain(table);
    }
  });

  it('declares the AAD that the code builds', () => {
    const sample: Record<string, string | number> = { namespace_id: 'ns-1', version: 3, name: 'audit', id: 'imp-1', secret_id: 'sec-1' };
    for (const e of ROOT_WRAPPED) {
      const declared = encode([e.aad.context, ...e.aad.fields.map((f) => sample[f]!), 7]);
      expect({ table: e.table, aad: Buffer.from(ROOT_WRAPPED_AAD[e.table].aad(sample, 7)).toString() }).toEqual({ table: e.table, aad: Buffer.from(declared).toString() });
    }
    const dek = KEK_WRAPPED[0] as (typeof KEK_WRAPPED)[0] & { encrypts: NonNullable<(typeof KEK_WRAPPED)[0]["encrypts"]> };
    const kms = KEK_WRAPPED.find((e) => e.table === 'kms_key_versions')!;
    const kmsSample: Record<string, string | number> = { ...sample, key_id: 'key-1', name: 'signer', type: 'ed25519' };
    expect(Buffer.from(aad.kmsKey('ns-1', 'key-1', 'signer', 'ed25519', 3, 2)).toString()).toBe(
      Buffer.from(encode([kms.aad.context, ...kms.aad.fields.map((f) => kmsSample[f]!), 2])).toString(),
    );
    expect(Buffer.from(aad.dek('ns-1', 'sec-1', 3, 2)).toString()).toBe(Buffer.from(encode([dek.aad.context, ...dek.aad.fields.map((f) => sample[f]!), 2])).toString());
    expect(Buffer.from(aad.secretValue('ns-1', 'sec-1', 3)).toString()).toBe(
      Buffer.from(encode([dek.encrypts.aad.context, ...dek.encrypts.aad.fields.map((f) => sample[f]!)])).toString(),
    );
  });

  it('fails for a table added without a classification, and for an undeclared bytes column', async () => {
    await sql`create table backups_demo (id int primary key, blob bytea, wrapped_note text)`.execute(storage.db);
    await sql`alter table namespaces add column sealed_blob bytea`.execute(storage.db);
    try {
      expect(unclassified(await schemaColumns(storage.db))).toEqual([
        'table backups_demo is not classified in TABLES',
        'backups_demo.blob (bytea) may hold key material and is not declared',
        'backups_demo.wrapped_note (text) may hold key material and is not declared',
        'namespaces.sealed_blob (bytea) may hold key material and is not declared',
      ]);
    } finally {
      await sql`drop table backups_demo`.execute(storage.db);
      await sql`alter table namespaces drop column sealed_blob`.execute(storage.db);
    }
  });
});
