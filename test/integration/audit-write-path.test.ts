// The audit write path under hostile input and failure: nothing a client sends can make an
// entry unwritable, one bad entry never fails the others in its batch, and a change that
// committed always ends up with an entry, even when its own append failed.
import { PassThrough } from 'node:stream';
import { sql } from 'kysely';
import type { RunningServer } from '@coffer/server/server';
import type { AuditDraft } from '@coffer/server/audit/entry';
import { api, createStore, describeEachStorage, initAndUnseal, startTestServer, type ApiResponse, type TestStore } from '../helpers/server.js';

const draft = (path: string): AuditDraft => ({
  request_id: `test-${Math.random().toString(36).slice(2)}`,
  identity: null,
  action: 'test.append',
  namespace: 'batch',
  path,
  version: null,
  outcome: 'success',
  status: 200,
  error_code: null,
  client: null,
  hashed: {},
});

describeEachStorage('audit write path', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let token: string;
  let logs = '';
  const db = () => server.storage.db;
  const entryOf = async (requestId: string) => {
    const row = await db().selectFrom('audit_log').select('body').where('request_id', '=', requestId).executeTakeFirst();
    return row ? JSON.parse(row.body) : undefined;
  };

  beforeAll(async () => {
    store = await createStore(kind);
    const logStream = new PassThrough();
    logStream.on('data', (chunk: Buffer) => (logs += chunk.toString()));
    server = await startTestServer(store, {}, logStream);
    base = server.url;
    ({ token } = await initAndUnseal(base, 1, 1));
    expect((await api(base, 'POST', '/v1/namespaces', { token, body: { name: 'batch' } })).status).toBe(201);
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('a NUL in a login name neither fails its own entry nor the writes batched with it', async () => {
    const nulLogins: Array<[string, unknown]> = [
      ['/v1/auth/userpass/login', { username: 'x\u0000', password: 'pw' }],
      ['/v1/auth/approle/login', { role_id: 'r\u0000', secret_id: 's' }],
      ['/v1/auth/jwt/login', { role: 'j\u0000', jwt: 'a.b.c' }],
      ['/v1/auth/cert/login', { role: 'c\u0000' }],
    ];
    const writes: ApiResponse[] = [];
    const logins: ApiResponse[] = [];
    let userpassLogins = 0;
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 32 }, async (_, i) => {
          if (i % 4 === 1) {
            const [path, body] = nulLogins[(i >> 2) % nulLogins.length]!;
            if (path.includes('userpass')) userpassLogins++;
            logins.push(await api(base, 'POST', path, { body }));
          } else {
            writes.push(await api(base, 'PUT', `/v1/secrets/batch/nul/r${round}-w${i}`, { token, body: { data: { v: `value-${i}` } } }));
          }
        }),
      );
    }
    expect(writes.map((w) => w.status).filter((s) => s !== 200)).toEqual([]);
    for (const w of writes) {
      expect(await entryOf(w.headers.get('x-request-id')!)).toMatchObject({ action: 'secret.write', status: 200, outcome: 'success' });
    }
    for (const l of logins) {
      expect(l.status).not.toBe(503);
      const entry = await entryOf(l.headers.get('x-request-id')!);
      expect(entry).toMatchObject({ status: l.status });
    }
    // The HTTP edge refuses text PostgreSQL cannot hold before any handler (400) and drops the body,
    // so the entry records the refusal without the name; the audit log's own escaping (next test)
    // is the second line of defence for whatever reaches an entry by another way.
    for (const l of logins) expect(l).toMatchObject({ status: 400 });
    const userpass = await db().selectFrom('audit_log').select(['path', 'body']).where('action', '=', 'auth.userpass.login').where('status', '=', 400).execute();
    expect(userpass.length).toBeGreaterThanOrEqual(userpassLogins);
    for (const row of userpass) expect(row.body).not.toContain('\\u0000');
    expect(await server.core.audit.verify()).toMatchObject({ ok: true });
  });

  it('escapes NULs and lone surrogates in every field, and the chain still verifies', async () => {
    const weird = { ...draft('p\u0000ath\ud800'), namespace: 'n\udc00s', identity: { id: 'i\u0000d', method: 'token' as const, display_name: 'd\u0000' }, hashed: { 'data.k\u0000': 'hmac-sha256:00' } };
    await server.core.audit.append(weird);
    const row = await db().selectFrom('audit_log').selectAll().where('request_id', '=', weird.request_id).executeTakeFirstOrThrow();
    expect({ path: row.path, namespace: row.namespace, identity: row.identity }).toEqual({ path: 'p\\u0000ath\\ud800', namespace: 'n\\udc00s', identity: 'i\\u0000d' });
    expect(JSON.parse(row.body)).toMatchObject({ path: row.path, namespace: row.namespace, identity: { id: 'i\\u0000d', display_name: 'd\\u0000' }, hashed: { 'data.k\\u0000': 'hmac-sha256:00' } });
    // A valid pair (an emoji) is kept as it is.
    const emoji = draft('key-\u{1F511}');
    await server.core.audit.append(emoji);
    expect((await entryOf(emoji.request_id)).path).toBe('key-\u{1F511}');
    expect((await server.core.audit.verify()).ok).toBe(true);
  });

  it('a batch holding an entry the database refuses fails only that entry', async () => {
    // A trigger stands in for any entry the database cannot take, whatever the encoding does.
    await sql.raw(`create or replace function audit_poison() returns trigger language plpgsql as $$
      begin if new.path = 'poison' then raise exception 'refused by the test trigger'; end if; return new; end $$`).execute(db());
    await sql.raw('create trigger audit_poison before insert on audit_log for each row execute function audit_poison()').execute(db());
    try {
      const drafts = ['ok-1', 'ok-2', 'poison', 'ok-3', 'ok-4'].map(draft);
      // Appended in one tick: one group commit.
      const results = await Promise.allSettled(drafts.map((d) => server.core.audit.append(d)));
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      for (const d of drafts) expect(Boolean(await entryOf(d.request_id))).toBe(d.path !== 'poison');
    } finally {
      await sql.raw('drop trigger audit_poison on audit_log').execute(db());
    }
    expect((await server.core.audit.verify()).ok).toBe(true);
    const after = draft('after');
    await server.core.audit.append(after);
    expect(await entryOf(after.request_id)).toBeDefined();
  });

  /** Appends `waves` waves of `perWave` entries a millisecond apart, so entries keep arriving while batches are written. */
  async function stream(prefix: string, waves: number, perWave: number): Promise<{ drafts: AuditDraft[]; results: PromiseSettledResult<void>[] }> {
    const drafts: AuditDraft[] = [];
    const pending: Promise<void>[] = [];
    for (let w = 0; w < waves; w++) {
      for (let i = 0; i < perWave; i++) {
        const d = draft(`${prefix}-${w}-${i}`);
        drafts.push(d);
        pending.push(server.core.audit.append(d));
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return { drafts, results: await Promise.allSettled(pending) };
  }

  it('entries arriving while a batch is written are each written once, in arrival order, on an intact chain', async () => {
    const { drafts, results } = await stream('stream', 20, 10);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    const rows = await db().selectFrom('audit_log').select(['seq', 'request_id']).where('request_id', 'in', drafts.map((d) => d.request_id)).execute();
    expect(rows).toHaveLength(drafts.length);
    const seqOf = new Map(rows.map((r) => [r.request_id, Number(r.seq)]));
    const seqs = drafts.map((d) => seqOf.get(d.request_id)!);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect((await server.core.audit.verify()).ok).toBe(true);
  });

  it('an outage that ends while entries keep arriving is recorded by exactly one resumed entry', async () => {
    const resumed = async () => (await db().selectFrom('audit_log').select('seq').where('action', '=', 'sys.audit.resumed').execute()).length;
    const before = await resumed();
    await sql`alter table audit_log rename to audit_log_away`.execute(db());
    try {
      await expect(server.core.audit.append(draft('during-outage'))).rejects.toThrow();
    } finally {
      await sql`alter table audit_log_away rename to audit_log`.execute(db());
    }
    const { results } = await stream('after-outage', 20, 10);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(await resumed()).toBe(before + 1);
    expect((await server.core.audit.verify()).ok).toBe(true);
  });

  it('a change that committed but whose entry could not be appended gets an entry from its intent', async () => {
    await sql`alter table audit_log rename to audit_log_away`.execute(db());
    let res: ApiResponse;
    try {
      res = await api(base, 'PUT', '/v1/secrets/batch/orphan', { token, body: { data: { v: 'orphan-value-5d2' } } });
      expect(res.status).toBe(503);
      expect(res.text).not.toContain('orphan-value-5d2');
    } finally {
      await sql`alter table audit_log_away rename to audit_log`.execute(db());
    }
    // The write did commit: without the intent it would now be a change nobody audited.
    expect((await api(base, 'GET', '/v1/secrets/batch/orphan', { token })).body.data.v).toBe('orphan-value-5d2');
    const requestId = res.headers.get('x-request-id')!;
    await server.core.audit.recoverIntents();
    const entry = await entryOf(requestId);
    expect(entry).toMatchObject({
      request_id: requestId,
      action: 'secret.write',
      namespace: 'batch',
      path: 'orphan',
      outcome: 'unknown',
      identity: { id: 'root' },
      reason: expect.stringMatching(/intent/),
    });
    expect(JSON.stringify(entry)).not.toContain('orphan-value-5d2');
    const verify = await server.core.audit.verify();
    expect(verify).toMatchObject({ ok: true, pending_intents: 0 });
    expect(verify.recovered_entries).toBeGreaterThanOrEqual(1);
    const found = await api(base, 'GET', '/v1/sys/audit?outcome=unknown', { token });
    expect(found.body.entries.map((e: { request_id: string }) => e.request_id)).toContain(requestId);
  });

  it('a write whose intent cannot be recorded with it is refused (503) and changes nothing', async () => {
    // A secret write records its intent inside its own transaction (intentInTransaction).
    await sql`alter table audit_intents rename to audit_intents_away`.execute(db());
    let res: ApiResponse;
    try {
      res = await api(base, 'PUT', '/v1/secrets/batch/no-intent', { token, body: { data: { v: 'no-intent-value-8a1' } } });
    } finally {
      await sql`alter table audit_intents_away rename to audit_intents`.execute(db());
    }
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('unavailable');
    expect(res.text).not.toContain('no-intent-value-8a1');
    expect((await api(base, 'GET', '/v1/secrets/batch/no-intent', { token })).status).toBe(404);
    expect(await entryOf(res.headers.get('x-request-id')!)).toMatchObject({ action: 'secret.write', path: 'no-intent', status: 503, error_code: 'unavailable' });
    // The next write goes through, its intent deleted with its entry.
    expect((await api(base, 'PUT', '/v1/secrets/batch/no-intent', { token, body: { data: { v: 'x' } } })).status).toBe(200);
    expect(await server.core.audit.verify()).toMatchObject({ ok: true, pending_intents: 0 });
  });

  it('logs no query parameter of a failing statement', async () => {
    await sql`alter table audit_log rename to audit_log_away`.execute(db());
    try {
      expect((await api(base, 'GET', '/v1/secrets/batch/param-marker-7f3e', { token })).status).toBe(503);
    } finally {
      await sql`alter table audit_log_away rename to audit_log`.execute(db());
    }
    expect(logs).toContain('audit write failed');
    expect(logs).not.toContain('param-marker-7f3e');
  });
});
