// The audit log's drain (group commit) on a real store (PGlite): no entry may be left in the queue
// with nothing to write it.
import pino from 'pino';
import { AuditLog } from '@coffer/server/audit/audit-log';
import type { AuditDraft } from '@coffer/server/audit/entry';
import { createRepos } from '@coffer/server/storage/repos/index';
import { openStorage, type Storage } from '@coffer/server/storage/db';

const draft = (requestId: string): AuditDraft => ({
  request_id: requestId,
  identity: { id: 'test', method: 'token', display_name: 'test' },
  action: 'secret.read',
  namespace: 'ns',
  path: 'p',
  version: null,
  outcome: 'success',
  status: 200,
  error_code: null,
  client: '127.0.0.1',
  hashed: {},
});

const STUCK = 'still queued after 10 s';
const within = <T>(work: Promise<T>) =>
  Promise.race([work, new Promise<string>((resolve) => setTimeout(() => resolve(STUCK), 10_000).unref())]);

describe('audit drain', () => {
  let storage: Storage;
  let audit: AuditLog;

  beforeAll(async () => {
    storage = await openStorage({ dataDir: 'memory://' });
    const repos = createRepos(storage.db);
    audit = new AuditLog(
      { audit: repos.audit, intents: repos.auditIntents },
      { database: true, lines: [], timeoutMs: 10_000, checkpointEvery: 1000, maxBatch: 100, exclusive: true },
      pino({ level: 'silent' }),
    );
  });
  afterAll(async () => {
    await audit?.close();
    await storage?.close();
  });

  it('writes an entry appended by a caller its previous batch just released', async () => {
    // Each caller appends again as soon as its entry is written (as a client's next request would,
    // without the network in between): those appends come while the drain is finishing.
    const chained = await within(Promise.all(['a', 'b', 'c'].map((id) => audit.append(draft(`${id}-1`)).then(() => audit.append(draft(`${id}-2`))))));
    expect(chained).not.toBe(STUCK);
    expect(await within(audit.append(draft('d-1')))).not.toBe(STUCK);
    const found = await audit.search({ order: 'asc', limit: 100 });
    expect(found.entries.map((e) => e.request_id).sort()).toEqual(['a-1', 'a-2', 'b-1', 'b-2', 'c-1', 'c-2', 'd-1']);
    expect(await audit.verify()).toMatchObject({ ok: true });
  }, 60_000);
});
