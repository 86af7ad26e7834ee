// Sanity checks of the test harness itself (test/helpers/env.ts, scripts/test.mjs).

import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { initSoftHsmToken, writeSoftHsmConf } from '#lib/softhsm.mjs';
import { createTestDatabase, describeIfPostgres, describeIfSoftHsm, postgresUrl, softHsmModule, softHsmUtil } from './helpers/env.js';

const run = promisify(execFile);

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult<T>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query<T>(sql, params);
  } finally {
    await client.end();
  }
}

describeIfPostgres('harness: createTestDatabase', () => {
  it('creates a usable database and drop() removes it', async () => {
    const db = await createTestDatabase();
    try {
      expect(db.name).toMatch(/^coffer_test_[0-9a-f]{16}$/);
      expect(new URL(db.url).pathname).toBe(`/${db.name}`);

      const one = await query<{ one: number; db: string }>(db.url, 'select 1 as one, current_database() as db');
      expect(one.rows).toEqual([{ one: 1, db: db.name }]);
    } finally {
      await db.drop();
    }

    const left = await query(postgresUrl()!, 'select 1 from pg_database where datname = $1', [db.name]);
    expect(left.rowCount).toBe(0);
  });

  it('drop() works while connections are still open', async () => {
    const db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => {});
    await client.connect();
    await db.drop();
    await db.drop(); // idempotent
    const left = await query(postgresUrl()!, 'select 1 from pg_database where datname = $1', [db.name]);
    expect(left.rowCount).toBe(0);
    await client.end().catch(() => {});
  });
});

describeIfSoftHsm('harness: SoftHSM2', () => {
  it('can initialise a throwaway token', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'coffer-softhsm-'));
    try {
      const conf = writeSoftHsmConf(path.join(dir, 'softhsm2.conf'), dir);
      const env = { ...process.env, SOFTHSM2_CONF: conf };
      initSoftHsmToken({ util: softHsmUtil(), conf, label: 'coffer-harness', pin: '1234', soPin: '5678', module: softHsmModule()! });
      const { stdout } = await run(softHsmUtil(), ['--show-slots', '--module', softHsmModule()!], { env });
      expect(stdout).toContain('coffer-harness');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
