// Bulk seeding for the KEK rewrap scenarios (r1, r2): the one place the bench writes rows
// itself, kept apart so that nothing else grows the habit.
//
// Why not the HTTP API: the scenarios need 100,000 secrets (10,000 with --quick), and writes
// through PUT /v1/secrets run at a few hundred to about a thousand per second on this kind of
// machine (scenario c1) — minutes of seeding for a measurement of seconds. What they measure
// is the rewrap job, which only needs real envelopes to move.
//
// How: each secret gets a real envelope from the keyring's public encryptValue (a fresh DEK
// wrapped under KEK version 1, the value sealed under it: what a write stores), and the rows
// go in through the storage layer's public handle (RunningServer.storage.db), never through
// the core's. The columns are those of storage/schema.ts (secrets, secret_versions).
import { randomUUID } from 'node:crypto';

/** Inserts `count` version-1 secrets (paths from `pathOf(i)`, values from `valueOf(i)`) in transactions of `chunk`. */
export async function seedSecrets({ storage, keyring, namespaceId, count, pathOf, valueOf, chunk = 2000 }) {
  const encoder = new TextEncoder();
  for (let start = 0; start < count; start += chunk) {
    const secrets = [];
    const versions = [];
    for (let i = start; i < Math.min(count, start + chunk); i++) {
      const id = randomUUID();
      secrets.push({ id, namespace_id: namespaceId, path: pathOf(i), current_version: 1, max_versions: 10 });
      const enc = await keyring.encryptValue({ namespaceId, secretId: id, version: 1 }, 1, encoder.encode(JSON.stringify(valueOf(i))));
      versions.push({ secret_id: id, version: 1, type: 'generic', metadata: '{}', kek_version: 1, wrapped_dek: enc.wrappedDek, ciphertext: enc.ciphertext });
    }
    await storage.db.transaction().execute(async (trx) => {
      await trx.insertInto('secrets').values(secrets).execute();
      await trx.insertInto('secret_versions').values(versions).execute();
    });
  }
}

/** Secret versions whose DEK is wrapped under any KEK version but `kekVersion`: the check after a rewrap, counted independently of the job. */
export async function countDeksNotUnder(storage, kekVersion) {
  const { n } = await storage.db
    .selectFrom('secret_versions')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('kek_version', '<>', kekVersion)
    .executeTakeFirstOrThrow();
  return Number(n);
}
