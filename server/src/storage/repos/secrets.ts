/**
 * secrets and secret_versions: a secret's path and version counter, and each
 * version's DEK (wrapped by a namespace KEK version, see wrapped-tables.ts)
 * and value ciphertext.
 *
 * Locks, and why:
 *  - a write's `upsertForWrite` creates the secret or takes its next version
 *    number in one statement, and row-locks it: concurrent writers of one
 *    path each get their own version, none is lost;
 *  - a combined write (`lockNamespaceAndSecrets`) locks several secrets'
 *    rows in one statement, always in path order, so two combined writes
 *    (on any servers) never wait for each other in a cycle; every other
 *    writer holds one secret row at a time;
 *  - version changes and purges take the secret row FOR UPDATE (`find` with
 *    `lock`), so they serialise with writes of the same path;
 *  - reads take no lock: a version's row never changes except to be deleted,
 *    destroyed or rewrapped, and every one of those leaves it readable or
 *    reports it gone.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Executor } from '../executor.js';
import { currentFence } from '../job-fence.js';
import { COMMIT_WITH, PREPARED } from '../pipelined-client.js';
import { prefixRange } from '../prefix-range.js';
import type { Database } from '../schema.js';

/** The stored columns of a version that reading it needs. */
const VERSION_COLUMNS = ['v.version', 'v.type', 'v.metadata', 'v.kek_version', 'v.wrapped_dek', 'v.ciphertext', 'v.created_at'] as const;

/** A write's first statement's row: its namespace, and the secret it locked (nulls: none). */
interface LockedRow {
  namespace_id: string;
  current_kek_version: number;
  deletion_date: Date | null;
  id: string | null;
  current_version: number | null;
  max_versions: number | null;
}

/**
 * A write's KEK usage reservation (keyring/usage.ts): the CTE adding `reserve.n` to the version's
 * stored count, and the column reading the new count back (null without a reservation).
 */
function reservation(reserve: VersionCompanions['reserve']): { counted: RawBuilder<unknown>; encryptions: RawBuilder<unknown> } {
  if (!reserve) return { counted: sql``, encryptions: sql`null::bigint` };
  return {
    counted: sql`, counted as (update namespace_keys set encryptions = encryptions + ${reserve.n}
              where namespace_id = ${reserve.namespaceId} and version = ${reserve.kekVersion} returning encryptions)`,
    encryptions: sql`(select encryptions from counted)`,
  };
}

/** The COMMIT sent with a write's last statement; none in a job's fenced transaction, whose epoch check runs just before its commit (job-fence.ts). */
const commitWith = (last: boolean | undefined) => (last && currentFence() === null ? sql.raw(COMMIT_WITH) : sql``);

export interface NewSecretVersion {
  secret_id: string;
  version: number;
  type: string;
  /** JSON text. */
  metadata: string;
  kek_version: number;
  wrapped_dek: Uint8Array;
  ciphertext: Uint8Array;
}

/** What a write commits beside its version (see `insertVersionAndPrune`). */
export interface VersionCompanions {
  /** Adds `n` to a KEK version's encryption count (keyring/usage.ts reserves counts in blocks). */
  reserve?: { namespaceId: string; kekVersion: number; n: number } | undefined;
  /** The request's audit intent (audit/intents.ts): it commits with the change or not at all. */
  intent?: { requestId: string; owner: string; time: Date; draft: string } | undefined;
  /** A change-feed notification (storage/change-feed.ts), sent by PostgreSQL at commit. */
  notify?: { channel: string; payload: string } | undefined;
  /**
   * The statement is its transaction's last: on PostgreSQL the COMMIT goes with it, in the same
   * round trip (storage/pipelined-client.ts), and nothing may run in the transaction after it.
   */
  last?: boolean | undefined;
}

/**
 * `column` starts with `prefix`, as a range of the "C" collation the paths are stored in, so
 * that the (namespace_id, path) index scans just the folder: a folder late in a namespace of a
 * million paths costs what an early one does (test/contract/secret-repos checks the plan).
 */
function underPrefix(column: 'path' | 's.path', prefix: string): RawBuilder<boolean> {
  const { lower, upper } = prefixRange(prefix);
  const ref = sql.ref(column);
  if (prefix === '') return sql<boolean>`true`;
  if (upper === null) return sql<boolean>`(${ref} >= ${lower} and starts_with(${ref}, ${prefix}))`;
  return sql<boolean>`(${ref} >= ${lower} and ${ref} < ${upper})`;
}

/** The folder queries, built but not run: the repository runs them, the contract test EXPLAINs them. */
export const folderQueries = {
  currentVersionsPage(tx: Executor, namespaceId: string, folder: string, after: string, limit: number) {
    return tx
      .selectFrom('secrets as s')
      .innerJoin('secret_versions as v', (join) => join.onRef('v.secret_id', '=', 's.id').onRef('v.version', '=', 's.current_version'))
      .select(['s.id as secret_id', 's.path', ...VERSION_COLUMNS])
      .where('s.namespace_id', '=', namespaceId)
      .where(underPrefix('s.path', folder))
      .where('s.path', '>', after)
      .where('v.deleted_at', 'is', null)
      .where('v.destroyed_at', 'is', null)
      .orderBy('s.path')
      .limit(limit);
  },

  pathsUnder(tx: Executor, namespaceId: string, prefix: string, after: string, limit: number) {
    return tx
      .selectFrom('secrets')
      .select('path')
      .where('namespace_id', '=', namespaceId)
      .where(underPrefix('path', prefix))
      .where('path', '>', after)
      .orderBy('path')
      .limit(limit);
  },

  folderEntries(namespaceId: string, folder: string, after: string, limit: number, sample: number) {
    const rest = sql<string>`substr(path, ${folder.length + 1})`;
    const key = sql<string>`(case when strpos(${rest}, '/') > 0 then split_part(${rest}, '/', 1) || '/' else ${rest} end) collate "C"`;
    return sql<{ key: string; sample: string[]; total: number | string }>`
      select key, (array_agg(path order by path))[1:${sql.lit(sample)}] as sample, count(*) as total
      from (select path, ${key} as key from secrets where namespace_id = ${namespaceId} and ${underPrefix('path', folder)}) entries
      where key > ${after}
      group by key
      order by key
      limit ${limit}`;
  },
};

export function secretsRepo(db: Kysely<Database>) {
  return {
    /**
     * Creates the secret at version 1, or moves an existing one to its next
     * version (changing max_versions when given); row-locks it until the
     * transaction ends. One statement, so two writers never take the same
     * version number.
     */
    async upsertForWrite(
      row: { id: string; namespaceId: string; path: string; maxVersions: number | null; defaultMaxVersions: number },
      tx: Executor,
    ): Promise<{ id: string; current_version: number; max_versions: number }> {
      const { rows } = await sql<{ id: string; current_version: number; max_versions: number }>`
          insert into secrets (id, namespace_id, path, current_version, max_versions)
          values (${row.id}, ${row.namespaceId}, ${row.path}, 1, ${row.maxVersions ?? row.defaultMaxVersions})
          on conflict (namespace_id, path) do update
            set current_version = secrets.current_version + 1,
                max_versions = coalesce(${row.maxVersions}::int, secrets.max_versions),
                updated_at = now()
          returning id, current_version, max_versions`.execute(tx);
      return rows[0]!;
    },

    /**
     * A write's first statement: `upsertForWrite` behind the namespace's FOR
     * SHARE lock (namespaces.ts `lockForWrite`), one round trip for the two.
     * No namespace: undefined. A namespace being shredded (deletion_date set):
     * no secret is touched and `secret` is undefined.
     */
    async lockNamespaceAndUpsert(
      namespace: string,
      row: { id: string; path: string; maxVersions: number | null; defaultMaxVersions: number },
      tx: Executor,
    ) {
      const { rows } = await sql<LockedRow>`${sql.raw(PREPARED)}
          with ns as (select id, current_kek_version, deletion_date from namespaces where name = ${namespace} for share),
          secret as (
            insert into secrets (id, namespace_id, path, current_version, max_versions)
            select ${row.id}::uuid, ns.id, ${row.path}::text, 1, ${row.maxVersions ?? row.defaultMaxVersions}::int from ns where ns.deletion_date is null
            on conflict (namespace_id, path) do update
              set current_version = secrets.current_version + 1,
                  max_versions = coalesce(${row.maxVersions}::int, secrets.max_versions),
                  updated_at = now()
            returning id, current_version, max_versions)
          select ns.id as namespace_id, ns.current_kek_version, ns.deletion_date, secret.id, secret.current_version, secret.max_versions
          from ns left join secret on true`.execute(tx);
      const r = rows[0];
      if (!r) return undefined;
      const namespaceRow = { id: r.namespace_id, current_kek_version: r.current_kek_version, deletion_date: r.deletion_date };
      const secret = r.id === null ? undefined : { id: r.id, current_version: r.current_version!, max_versions: r.max_versions! };
      return { namespace: namespaceRow, secret };
    },

    /**
     * `insertVersion` and then `pruneVersions(row.secret_id, upTo)` in one
     * statement, with what else the write must commit (`companions`), so that
     * a write holds its secret's row lock for this one round trip and the
     * commit. Only for `upTo` below the new version: the delete does not see
     * the row inserted beside it. `encryptions`: the KEK version's new count
     * when a block was reserved, else null.
     */
    async insertVersionAndPrune(
      row: NewSecretVersion,
      upTo: number,
      tx: Executor,
      companions: VersionCompanions = {},
    ): Promise<{ created_at: Date; encryptions: number | null }> {
      if (upTo >= row.version) throw new RangeError('insertVersionAndPrune cannot prune the version it inserts');
      const { reserve, intent, notify } = companions;
      // Data-modifying CTEs run whether or not they are referenced; the reservation's count and
      // the notification (a plain SELECT, run only when referenced) are read in the final select.
      const { counted, encryptions } = reservation(reserve);
      const intended = intent
        ? sql`, intended as (insert into audit_intents (request_id, owner, time, draft)
              values (${intent.requestId}, ${intent.owner}, ${intent.time.toISOString()}::timestamptz, ${intent.draft}))`
        : sql``;
      const notified = notify ? sql`, (select count(*) from (select pg_notify(${notify.channel}, ${notify.payload})) n) as notified` : sql``;
      const commit = commitWith(companions.last);
      const { rows } = await sql<{ created_at: Date; encryptions: string | number | null }>`${commit}${sql.raw(PREPARED)}
          with pruned as (delete from secret_versions where secret_id = ${row.secret_id} and version <= ${upTo})${counted}${intended},
          inserted as (
            insert into secret_versions (secret_id, version, type, metadata, kek_version, wrapped_dek, ciphertext)
            values (${row.secret_id}, ${row.version}, ${row.type}, ${row.metadata}::jsonb, ${row.kek_version}, ${row.wrapped_dek}, ${row.ciphertext})
            returning created_at)
          select inserted.created_at, ${encryptions} as encryptions${notified} from inserted`.execute(tx);
      const r = rows[0]!;
      return { created_at: r.created_at, encryptions: r.encryptions === null ? null : Number(r.encryptions) };
    },

    /**
     * A combined write's first statement (secrets/write-combiner.ts): the namespace's FOR SHARE
     * lock and the rows of the secrets at `paths`, each created at version 0 if it does not exist,
     * row-locked until the transaction ends, their version counters not yet moved — the writes of
     * the group are judged (check-and-set, in order) against `current_version` before any is given
     * a number; `insertVersionsAndPrune` moves the counters. The rows are locked in path order, so
     * two groups (on any servers) never wait for each other in a cycle. No namespace: undefined; a
     * namespace being shredded: no secret touched, `secrets` empty.
     */
    async lockNamespaceAndSecrets(namespace: string, paths: readonly string[], defaultMaxVersions: number, tx: Executor) {
      const sorted = [...new Set(paths)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const { rows } = await sql<LockedRow & { path: string | null }>`${sql.raw(PREPARED)}
          with ns as (select id, current_kek_version, deletion_date from namespaces where name = ${namespace} for share),
          secret as (
            insert into secrets (id, namespace_id, path, current_version, max_versions)
            select p.id, ns.id, p.path, 0, ${defaultMaxVersions}::int
            from ns, unnest(${sorted.map(() => randomUUID())}::uuid[], ${sorted}::text[]) with ordinality as p(id, path, n)
            where ns.deletion_date is null
            order by p.n
            on conflict (namespace_id, path) do update set current_version = secrets.current_version
            returning id, path, current_version, max_versions)
          select ns.id as namespace_id, ns.current_kek_version, ns.deletion_date, secret.id, secret.path, secret.current_version, secret.max_versions
          from ns left join secret on true`.execute(tx);
      const r = rows[0];
      if (!r) return undefined;
      const namespaceRow = { id: r.namespace_id, current_kek_version: r.current_kek_version, deletion_date: r.deletion_date };
      const secrets = new Map<string, { id: string; current_version: number; max_versions: number }>();
      for (const s of rows) if (s.id !== null) secrets.set(s.path!, { id: s.id, current_version: s.current_version!, max_versions: s.max_versions! });
      return { namespace: namespaceRow, secrets };
    },

    /**
     * A combined write's last statement: each secret's row moved to its `currentVersion` (and
     * `maxVersions`), the versions stored, each secret's retention delete (its versions up to
     * `upTo`, which must be below every version of it stored: the delete does not see rows
     * inserted beside it) and the companions (one reservation, every request's intent, a
     * notification per secret) in one statement, whatever the number of secrets and versions
     * (arrays, so the statement's text is one of a few and stays prepared). `created_at`: the
     * transaction's time, every version's.
     */
    async insertVersionsAndPrune(
      secrets: readonly { id: string; currentVersion: number; maxVersions: number; upTo: number }[],
      rows: readonly NewSecretVersion[],
      tx: Executor,
      companions: Omit<VersionCompanions, 'intent' | 'notify'> & {
        intents?: readonly NonNullable<VersionCompanions['intent']>[];
        notify?: { channel: string; payloads: readonly string[] } | undefined;
      } = {},
    ): Promise<{ created_at: Date; encryptions: number | null }> {
      if (rows.length === 0) throw new RangeError('insertVersionsAndPrune needs a version to store');
      const upTo = new Map(secrets.map((s) => [s.id, s.upTo]));
      if (rows.some((r) => !upTo.has(r.secret_id) || r.version <= upTo.get(r.secret_id)!)) {
        throw new RangeError('insertVersionsAndPrune stores versions of the secrets it moves only, above what it prunes');
      }
      const { reserve, notify } = companions;
      const intents = companions.intents ?? [];
      const { counted, encryptions } = reservation(reserve);
      const notified = notify
        ? sql`, (select count(*) from (select pg_notify(${notify.channel}, x) from unnest(${notify.payloads}::text[]) x) n) as notified`
        : sql``;
      const commit = commitWith(companions.last);
      // Byte strings travel as hex text arrays: both drivers pass a text[] the same way.
      const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
      const ids = sql`${secrets.map((s) => s.id)}::uuid[]`;
      const { rows: result } = await sql<{ created_at: Date; encryptions: string | number | null }>`${commit}${sql.raw(PREPARED)}
          with pruned as (delete from secret_versions v using unnest(${ids}, ${secrets.map((s) => s.upTo)}::int[]) as p(id, up_to)
            where v.secret_id = p.id and v.version <= p.up_to)${counted},
          moved as (update secrets s set current_version = p.current_version, max_versions = p.max_versions, updated_at = now()
            from unnest(${ids}, ${secrets.map((s) => s.currentVersion)}::int[], ${secrets.map((s) => s.maxVersions)}::int[]) as p(id, current_version, max_versions)
            where s.id = p.id),
          intended as (insert into audit_intents (request_id, owner, time, draft)
            select * from unnest(${intents.map((i) => i.requestId)}::text[], ${intents.map((i) => i.owner)}::text[],
              ${intents.map((i) => i.time.toISOString())}::timestamptz[], ${intents.map((i) => i.draft)}::text[])),
          inserted as (
            insert into secret_versions (secret_id, version, type, metadata, kek_version, wrapped_dek, ciphertext)
            select v.secret_id, v.version, v.type, v.metadata::jsonb, v.kek_version, decode(v.wrapped_dek, 'hex'), decode(v.ciphertext, 'hex')
            from unnest(${rows.map((r) => r.secret_id)}::uuid[], ${rows.map((r) => r.version)}::int[], ${rows.map((r) => r.type)}::text[],
              ${rows.map((r) => r.metadata)}::text[], ${rows.map((r) => r.kek_version)}::int[], ${rows.map((r) => hex(r.wrapped_dek))}::text[],
              ${rows.map((r) => hex(r.ciphertext))}::text[])
              as v(secret_id, version, type, metadata, kek_version, wrapped_dek, ciphertext)
            returning created_at)
          select (select min(created_at) from inserted) as created_at, ${encryptions} as encryptions${notified}`.execute(tx);
      const r = result[0]!;
      return { created_at: r.created_at, encryptions: r.encryptions === null ? null : Number(r.encryptions) };
    },

    async insertVersion(row: NewSecretVersion, tx: Executor = db): Promise<{ created_at: Date }> {
      return tx.insertInto('secret_versions').values(row).returning('created_at').executeTakeFirstOrThrow();
    },

    /** Retention: versions up to `upTo` are removed with their DEKs. */
    async pruneVersions(secretId: string, upTo: number, tx: Executor = db): Promise<void> {
      await tx.deleteFrom('secret_versions').where('secret_id', '=', secretId).where('version', '<=', upTo).execute();
    },

    /**
     * One version of a secret (default: the current one) with its namespace's
     * id and shredding state: the read path's single query.
     */
    async readVersion(namespace: string, path: string, version: number | undefined, tx: Executor = db) {
      return tx
        .selectFrom('secrets as s')
        .innerJoin('namespaces as n', 'n.id', 's.namespace_id')
        .innerJoin('secret_versions as v', (join) =>
          version === undefined
            ? join.onRef('v.secret_id', '=', 's.id').onRef('v.version', '=', 's.current_version')
            : join.onRef('v.secret_id', '=', 's.id').on('v.version', '=', version),
        )
        .select(['n.id as namespace_id', 'n.deletion_date', 's.id as secret_id', ...VERSION_COLUMNS, 'v.deleted_at', 'v.destroyed_at'])
        .where('n.name', '=', namespace)
        .where('s.path', '=', path)
        .executeTakeFirst();
    },

    /** Up to `limit` secrets under `folder` after path `after`, in path order, with their readable current version. */
    async currentVersionsPage(namespaceId: string, folder: string, after: string, limit: number, tx: Executor = db) {
      return folderQueries.currentVersionsPage(tx, namespaceId, folder, after, limit).execute();
    },

    /** A secret by namespace name and path, with the namespace's shredding state; FOR UPDATE of the secret row with `lock`. */
    async find(namespace: string, path: string, lock: boolean, tx: Executor = db) {
      let query = tx
        .selectFrom('secrets as s')
        .innerJoin('namespaces as n', 'n.id', 's.namespace_id')
        .select(['s.id', 's.current_version', 's.max_versions', 's.created_at', 's.updated_at', 'n.deletion_date'])
        .where('n.name', '=', namespace)
        .where('s.path', '=', path);
      if (lock) query = query.forUpdate('s');
      return query.executeTakeFirst();
    },

    /** Every version's metadata, newest first. */
    async history(secretId: string, tx: Executor = db) {
      return tx
        .selectFrom('secret_versions')
        .select(['version', 'type', 'metadata', 'created_at', 'deleted_at', 'destroyed_at'])
        .where('secret_id', '=', secretId)
        .orderBy('version', 'desc')
        .execute();
    },

    /** Which of `versions` exist, and whether they were destroyed. */
    async findVersions(secretId: string, versions: number[], tx: Executor = db) {
      return tx
        .selectFrom('secret_versions')
        .select(['version', 'destroyed_at'])
        .where('secret_id', '=', secretId)
        .where('version', 'in', versions)
        .execute();
    },

    /** Soft delete (versions already deleted keep their first deletion time). */
    async markDeleted(secretId: string, versions: number[], at: Date, tx: Executor = db): Promise<void> {
      await tx.updateTable('secret_versions').where('secret_id', '=', secretId).where('version', 'in', versions).set({ deleted_at: at }).where('deleted_at', 'is', null).execute();
    },

    async undelete(secretId: string, versions: number[], tx: Executor = db): Promise<void> {
      await tx.updateTable('secret_versions').where('secret_id', '=', secretId).where('version', 'in', versions).set({ deleted_at: null }).execute();
    },

    /** Erases the wrapped DEK and ciphertext: the version can never be read again. */
    async destroyVersions(secretId: string, versions: number[], at: Date, tx: Executor = db): Promise<void> {
      await tx
        .updateTable('secret_versions')
        .where('secret_id', '=', secretId)
        .where('version', 'in', versions)
        .set({ wrapped_dek: null, ciphertext: null, destroyed_at: at })
        .where('destroyed_at', 'is', null)
        .execute();
    },

    /** Removes a secret with all its versions; returns how many versions went. */
    async purge(secretId: string, tx: Executor = db): Promise<number> {
      const removed = await tx.deleteFrom('secret_versions').where('secret_id', '=', secretId).executeTakeFirst();
      await tx.deleteFrom('secrets').where('id', '=', secretId).execute();
      return Number(removed.numDeletedRows);
    },

    /** Crypto-shredding: every version (wrapped DEKs, ciphertexts) and secret of a namespace. */
    async purgeNamespace(namespaceId: string, tx: Executor = db): Promise<void> {
      await tx
        .deleteFrom('secret_versions')
        .where('secret_id', 'in', (eb) => eb.selectFrom('secrets').select('id').where('namespace_id', '=', namespaceId))
        .execute();
      await tx.deleteFrom('secrets').where('namespace_id', '=', namespaceId).execute();
    },

    async countInNamespace(namespaceId: string, tx: Executor = db): Promise<number> {
      const { n } = await tx
        .selectFrom('secrets')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('namespace_id', '=', namespaceId)
        .executeTakeFirstOrThrow();
      return Number(n);
    },

    /** DEKs of a namespace (not destroyed) wrapped under any version other than `target`. */
    async countDeksToRewrap(namespaceId: string, target: number, tx: Executor = db): Promise<number> {
      const { n } = await tx
        .selectFrom('secret_versions as v')
        .innerJoin('secrets as s', 's.id', 'v.secret_id')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('s.namespace_id', '=', namespaceId)
        .where('v.wrapped_dek', 'is not', null)
        .where('v.kek_version', '<>', target)
        .executeTakeFirstOrThrow();
      return Number(n);
    },

    /** Up to `limit` secret paths starting with `prefix` after `after`, in path order ("C" collation). */
    async pathsUnder(namespaceId: string, prefix: string, after: string, limit: number, tx: Executor = db) {
      return folderQueries.pathsUnder(tx, namespaceId, prefix, after, limit).execute();
    },

    /**
     * The names directly in `folder` after `after`, in order: a secret, or a
     * sub-folder ("name/") with its first `sample` paths and how many it holds.
     */
    async folderEntries(namespaceId: string, folder: string, after: string, limit: number, sample: number, tx: Executor = db) {
      const { rows } = await folderQueries.folderEntries(namespaceId, folder, after, limit, sample).execute(tx);
      return rows.map((r) => ({ key: r.key, sample: r.sample, total: Number(r.total) }));
    },
  };
}

export type SecretsRepo = ReturnType<typeof secretsRepo>;
