// The folder queries (bulk read, recursive listing, folder listing) scan just the folder through
// the (namespace_id, path) index, as a range of the "C" collation: a folder late in a big
// namespace costs what an early one does. Checked on each backend's EXPLAIN of the queries the
// repository runs — as planned for the values at hand, and as a generic plan (what a prepared
// statement gets after a few runs, and all PostgreSQL before 15 can do: `starts_with` becomes a
// range only in a custom plan on PostgreSQL 15 or later) — in a namespace of 20,000 paths in 200 folders (enough that a scan and a range plan apart).
import { sql, type CompiledQuery, type RawBuilder } from 'kysely';
import { folderQueries } from '@coffer/server/storage/repos/secrets';
import { describeContract, seedNamespace } from './backends.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Plans?: PlanNode[];
}

const nodesOf = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];

/** The plan's nodes, from EXPLAIN (FORMAT JSON)'s one row (pg returns it parsed, PGlite as text). */
function planNodes(rows: ReadonlyArray<Record<string, unknown>>): PlanNode[] {
  const raw = Object.values(rows[0]!)[0];
  const doc = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: PlanNode }>;
  return nodesOf(doc[0]!.Plan);
}

describeContract('folder queries use the path index', (backend) => {
  // 10 top folders (d00/ … d09/) of 20 folders (f00/ … f19/) of 100 secrets.
  const PER_FOLDER = 100;
  let namespaceId = '';

  beforeAll(async () => {
    const db = backend.storage.db;
    namespaceId = (await seedNamespace(backend)).id;
    await sql`insert into secrets (id, namespace_id, path, current_version, max_versions)
      select gen_random_uuid(), ${namespaceId},
        'd' || lpad((i / 2000)::text, 2, '0') || '/f' || lpad(((i / 100) % 20)::text, 2, '0') || '/s' || lpad((i % 100)::text, 3, '0'), 1, 5
      from generate_series(0, 19999) i`.execute(db);
    await sql`insert into secret_versions (secret_id, version, type, kek_version, wrapped_dek, ciphertext)
      select id, 1, 'kv', 1, '\\x01'::bytea, '\\x02'::bytea from secrets where namespace_id = ${namespaceId}`.execute(db);
    await sql`analyze secrets`.execute(db);
    await sql`analyze secret_versions`.execute(db);
  }, 120_000);

  const late = 'd09/f19/';

  async function explain(query: { explain(format: 'json'): Promise<Array<Record<string, unknown>>> } | RawBuilder<unknown>): Promise<PlanNode[]> {
    if ('explain' in query) return planNodes(await query.explain('json'));
    const { rows } = await sql<Record<string, unknown>>`explain (format json) ${query}`.execute(backend.storage.db);
    return planNodes(rows);
  }

  function expectPathRange(nodes: PlanNode[]): void {
    expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'secrets')).toEqual([]);
    const ranged = nodes.find((n) => n['Index Name'] === 'secrets_namespace_id_path_key');
    expect(ranged?.['Index Cond']).toMatch(/path >= /);
    expect(ranged?.['Index Cond']).toMatch(/path < /);
  }

  /** The plan PostgreSQL makes for `query` whatever its parameter values. */
  async function genericPlan(query: CompiledQuery): Promise<PlanNode[]> {
    return backend.storage.db.transaction().execute(async (trx) => {
      await sql`set local plan_cache_mode = force_generic_plan`.execute(trx);
      await sql.raw(`prepare folder_query as ${query.sql}`).execute(trx);
      const { rows } = await sql<Record<string, unknown>>`explain (format json) execute folder_query(${sql.join(query.parameters.map((p) => sql.lit(p)))})`.execute(trx);
      await sql`deallocate folder_query`.execute(trx);
      return planNodes(rows);
    });
  }

  it('the bulk read page is an index range over the folder', async () => {
    const db = backend.storage.db;
    expectPathRange(await explain(folderQueries.currentVersionsPage(db, namespaceId, late, '', 101)));
    expectPathRange(await genericPlan(folderQueries.currentVersionsPage(db, namespaceId, late, '', 101).compile()));
    const page = await folderQueries.currentVersionsPage(db, namespaceId, late, '', 101).execute();
    expect(page.map((r) => r.path)).toEqual(Array.from({ length: PER_FOLDER }, (_, i) => `${late}s${String(i).padStart(3, '0')}`));
  });

  it('the recursive listing and the folder listing are index ranges over the folder', async () => {
    const db = backend.storage.db;
    expectPathRange(await explain(folderQueries.pathsUnder(db, namespaceId, late, '', 101)));
    expectPathRange(await genericPlan(folderQueries.pathsUnder(db, namespaceId, late, '', 101).compile()));
    expectPathRange(await explain(folderQueries.folderEntries(namespaceId, 'd09/', 'f17/', 10, 3)));
    expectPathRange(await genericPlan(folderQueries.folderEntries(namespaceId, 'd09/', 'f17/', 10, 3).compile(db)));
    const { rows } = await folderQueries.folderEntries(namespaceId, 'd09/', 'f17/', 10, 3).execute(db);
    expect(rows.map((r) => [r.key, Number(r.total)])).toEqual([
      ['f18/', PER_FOLDER],
      ['f19/', PER_FOLDER],
    ]);
  });
});
