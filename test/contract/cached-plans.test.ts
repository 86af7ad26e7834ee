// Hot prepared statements on PostgreSQL whose tables churn are planned without sequential scans
// (storage/pipelined-client.ts NO_SEQSCAN): the audit append that deletes write intents
// (storage/repos/audit.ts). audit_intents holds a few live rows and, between vacuums, the dead
// ones of every write since: the plan PostgreSQL caches for the prepared statement while the
// table looks tiny was a sequential scan, kept while the heap grew, so each append read every
// dead row's page (bench c1: ~750 pages per append after 8 s, most of PostgreSQL's CPU per
// write). The setting must not outlive the statement's transaction, and must leave an explicit
// transaction's later statements as they were.
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { openStorage, type Storage } from '@coffer/server/storage/db';
import { createRepos, type Repos } from '@coffer/server/storage/repos/index';
import type { ChainRow } from '@coffer/server/storage/repos/audit';
import type { Database } from '@coffer/server/storage/schema';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';

describeIfPostgres('cached plans of churning tables (PostgreSQL)', () => {
  let database: TestDatabase;
  let storage: Storage;
  let repos: Repos;
  let seq = 0;
  const hash = (n: number) => String.fromCharCode(n % 256).repeat(32);

  /** Records an intent and appends its entry, deleting the intent (as audit/writer.ts does). */
  async function appendWithIntent(tx?: Kysely<Database>): Promise<string> {
    const requestId = randomUUID();
    await repos.auditIntents.insert('test-owner', [{ requestId, time: new Date(), draft: '{}' }], tx);
    seq += 1;
    const row: ChainRow = {
      seq,
      time: new Date().toISOString(),
      draft: { request_id: requestId, identity: null, action: 'secret.write', namespace: 'ns', path: 'p', outcome: 'success', status: 200 },
      body: JSON.stringify({ seq, request_id: requestId }),
      hash: hash(seq),
      prevHash: hash(seq - 1),
    };
    await repos.audit.append([row], [requestId], tx);
    return requestId;
  }
  const intentCount = async (db: Kysely<Database>, requestId: string) =>
    Number((await sql<{ n: number }>`select count(*) as n from audit_intents where request_id = ${requestId}`.execute(db)).rows[0]!.n);
  /** This backend's scans of `table` not yet reported: this transaction's and recent ones' (a run's are the difference). */
  const scans = async (tx: Kysely<Database>, table: string) => {
    const row = (await sql<{ seq_scan: number; idx_scan: number }>`select seq_scan, idx_scan from pg_stat_xact_user_tables where relname = ${table}`.execute(tx)).rows[0]!;
    return { seq: Number(row.seq_scan), idx: Number(row.idx_scan) };
  };
  const seqscanSetting = async (db: Kysely<Database>) => (await sql<{ v: string }>`select current_setting('enable_seqscan') as v`.execute(db)).rows[0]!.v;

  beforeAll(async () => {
    database = await createTestDatabase();
    // One connection: every append below runs on the one whose prepared statement's plan is cached.
    storage = await openStorage({ databaseUrl: database.url, dataDir: '', poolSize: 1 });
    repos = createRepos(storage.db);
  });
  afterAll(async () => {
    await storage?.close();
    await database?.drop();
  });

  it('deletes each intent by the index, also once the plan is cached, and the setting ends with the statement', async () => {
    // More runs than PostgreSQL's five custom plans: the cached generic plan is made and used.
    for (let i = 0; i < 8; i++) {
      const requestId = await appendWithIntent();
      expect(await intentCount(storage.db, requestId)).toBe(0);
      // The implicit transaction of the append ended at its Sync: the session plans as before.
      expect(await seqscanSetting(storage.db)).toBe('on');
    }
    await storage.db.transaction().execute(async (trx) => {
      const before = await scans(trx, 'audit_intents');
      const requestId = await appendWithIntent(trx);
      const after = await scans(trx, 'audit_intents');
      expect(after.seq - before.seq).toBe(0);
      expect(after.idx - before.idx).toBe(1);
      // The plan used was the cached one, not one made for this run.
      const plans = (await sql<{ generic_plans: number }>`select generic_plans from pg_prepared_statements where statement like '%delete from audit_intents%'`.execute(trx)).rows;
      expect(plans.length).toBe(1);
      expect(Number(plans[0]!.generic_plans)).toBeGreaterThanOrEqual(1);
      expect(await intentCount(trx, requestId)).toBe(0);
      // Later statements of an explicit transaction plan as they would have.
      expect(await seqscanSetting(trx)).toBe('on');
    });
    const entries = Number((await sql<{ n: number }>`select count(*) as n from audit_log`.execute(storage.db)).rows[0]!.n);
    expect(entries).toBe(9);
  });

  it('a failed append leaves no intent deleted and the connection usable', async () => {
    const requestId = randomUUID();
    await repos.auditIntents.insert('test-owner', [{ requestId, time: new Date(), draft: '{}' }]);
    // seq 1 exists: the primary key refuses the row, and the statement's delete with it.
    const row: ChainRow = {
      seq: 1,
      time: new Date().toISOString(),
      draft: { request_id: requestId, identity: null, action: 'secret.write', namespace: 'ns', path: 'p', outcome: 'success', status: 200 },
      body: '{}',
      hash: hash(1),
      prevHash: hash(0),
    };
    await expect(repos.audit.append([row], [requestId])).rejects.toThrow(/duplicate key|unique/i);
    expect(await intentCount(storage.db, requestId)).toBe(1);
    expect(await seqscanSetting(storage.db)).toBe('on');
  });
});
