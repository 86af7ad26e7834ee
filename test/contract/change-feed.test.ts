// Conformance of the change feed (storage/change-feed.ts) on PGlite and on PostgreSQL. What the
// servers rely on: a change is published inside the writing transaction, so another server hears
// it only once that transaction commits, never for a rolled-back one, and in commit order; `up`
// says whether changes from other servers are being heard (the read cache is used only then).
// PGlite is one process: its feed is always up and has nobody to tell, and publishing inside a
// transaction must still work (every write does it).
import { sql } from 'kysely';
import type { Storage } from '@coffer/server/storage/db';
import { describeContract, eventually } from './backends.js';

/** Collects what a storage's feed hears. */
function listen(storage: Storage): string[] {
  const heard: string[] = [];
  storage.changes.events.on('change', (payload: string) => heard.push(payload));
  return heard;
}

describeContract('change feed', (backend) => {
  it('is up, and publishing inside a transaction commits with it', async () => {
    expect(backend.storage.changes.up).toBe(true);
    const heard = listen(backend.storage);
    const result = await backend.storage.db.transaction().execute(async (trx) => {
      await backend.storage.changes.publish(trx, JSON.stringify({ kind: 'namespace', namespace: 'up-check' }));
      return 'committed';
    });
    expect(result).toBe('committed');
    if (!backend.sharedFeed) expect(heard).toEqual([]);
  });

  it('another server hears a change once it commits, never a rolled-back one, in commit order', async () => {
    if (!backend.sharedFeed) {
      // No other server exists; a rolled-back publish must leave no trace either.
      await expect(
        backend.storage.db.transaction().execute(async (trx) => {
          await backend.storage.changes.publish(trx, 'rolled-back');
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      await expect(backend.openAnother()).rejects.toThrow(/one process/);
      return;
    }
    const other = await backend.openAnother();
    await eventually(() => expect(other.changes.up).toBe(true));
    const heard = listen(other);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let published!: () => void;
    const isPublished = new Promise<void>((r) => (published = r));
    const slow = backend.storage.db.transaction().execute(async (trx) => {
      await backend.storage.changes.publish(trx, 'first-published');
      published();
      await held;
    });
    await isPublished;
    await expect(
      backend.storage.db.transaction().execute(async (trx) => {
        await backend.storage.changes.publish(trx, 'rolled-back');
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    await backend.storage.db.transaction().execute(async (trx) => {
      await backend.storage.changes.publish(trx, 'a');
      await backend.storage.changes.publish(trx, 'b');
    });
    // Committed after the transaction that published first: heard after it.
    await eventually(() => expect(heard).toEqual(['a', 'b']));
    release();
    await slow;
    await backend.storage.changes.publish(backend.storage.db, 'marker');
    await eventually(() => expect(heard).toEqual(['a', 'b', 'first-published', 'marker']));
  });

  it('a server whose feed went down hears changes again once it is back', async () => {
    if (!backend.sharedFeed) {
      expect(backend.storage.changes.up).toBe(true);
      return;
    }
    const other = await backend.openAnother();
    await eventually(() => expect(other.changes.up).toBe(true));
    const heard = listen(other);
    const states: string[] = [];
    other.changes.events.on('down', () => states.push('down'));
    other.changes.events.on('up', () => states.push('up'));
    // End the other server's LISTEN connection from the database side, as a restart or a proxy would.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen%'`.execute(backend.storage.db);
    await eventually(() => expect(states).toEqual(['down', 'up']));
    await backend.storage.changes.publish(backend.storage.db, 'after-reconnect');
    await eventually(() => expect(heard).toContain('after-reconnect'));
  });
});
