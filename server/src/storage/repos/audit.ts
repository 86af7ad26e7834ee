/**
 * audit_log and audit_checkpoints: the hash chain of audit entries and the
 * signed checkpoints over it. What goes in (the chain hashes, the signatures)
 * is computed by audit/; this module only stores and reads it.
 *
 * No query here locks: an entry is immutable once committed, and the primary
 * key on `seq` settles which of two servers appending at once gets a number
 * (the loser's whole INSERT fails with a unique violation and it retries).
 */
import { CompiledQuery, sql, type Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import { NO_SEQSCAN, PREPARED } from '../pipelined-client.js';
import { transactor } from './transaction.js';

/** One chained entry as the writer has it (audit/writer.ts builds these; nothing is copied for the INSERT). */
export interface ChainRow {
  seq: number;
  time: string;
  /** The entry's other fields; the columns copy some of them. */
  draft: {
    request_id: string;
    identity: { id: string } | null;
    action: string;
    namespace: string | null;
    path: string | null;
    outcome: string;
    status: number;
  };
  /** The entry as JSON: what the hash covers and what is read back. */
  body: string;
  /** The chain's hashes, 32 bytes each as binary strings (latin1: one char per byte). */
  hash?: string | undefined;
  prevHash?: string | undefined;
}

export interface ChainHead {
  seq: number;
  hash: Uint8Array;
}

/** A search over the entries' columns; values are compared as stored. */
export interface AuditQuery {
  identity?: string | undefined;
  namespace?: string | undefined;
  path?: string | undefined;
  action?: string | undefined;
  outcome?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** Newest first from before this seq (desc), or oldest first after it (asc). */
  cursor?: number | undefined;
  order: 'asc' | 'desc';
  limit: number;
}

const AUDIT_COLUMNS = 'seq, time, request_id, identity, action, namespace, path, outcome, status, body, prev_hash, hash';

/**
 * The one INSERT of a group commit, whatever its size: one statement text, so
 * it is prepared once per connection (PREPARED) and PostgreSQL neither parses
 * nor plans it per batch, where a VALUES list of 12 parameters per row had a
 * text (and a parse) per batch size. Rows come in as arrays, unnested in order:
 *  - $1 the head's seq (row i, from 1, gets $1 + i);
 *  - $2…$9 the search columns as arrays, one element per row;
 *  - $10 the chain's hashes back to back, 32 bytes each: the head's, then each
 *    row's, so row i's prev_hash is the (i-1)th and its hash the ith;
 *  - $11 the bodies joined by newlines: JSON.stringify never emits a raw
 *    newline (it escapes every control character), so the split gives back
 *    each body exactly, without array quoting of ~400 characters of JSON;
 *  - $12, in the second text only, the request ids whose intents the same
 *    statement deletes.
 */
const appendSql = (deleteIntents: string) => `${PREPARED}
  ${deleteIntents}insert into audit_log (${AUDIT_COLUMNS})
  select $1::bigint + r.i, r.time, r.request_id, r.identity, r.action, r.namespace, r.path, r.outcome, r.status, r.body,
    substring($10::bytea from (r.i::int - 1) * 32 + 1 for 32), substring($10::bytea from r.i::int * 32 + 1 for 32)
  from unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[],
    string_to_array($11::text, E'\\n')) with ordinality as r(time, request_id, identity, action, namespace, path, outcome, status, body, i)`;
/**
 * Two texts: entries without intents (reads) do not touch audit_intents at all. The second is
 * planned without sequential scans (NO_SEQSCAN): audit_intents holds a few live rows and, between
 * vacuums, every dead one of the writes since; its cached plan, made while the table looked tiny,
 * would read them all on every append instead of one index lookup per intent.
 */
const APPEND_SQL = appendSql('');
const APPEND_DELETING_INTENTS_SQL = appendSql(`${NO_SEQSCAN}with done as (delete from audit_intents where request_id = any($12::text[]))\n  `);

/** The parameters of APPEND_SQL for `rows`, which follow each other in the chain. */
function appendParams(rows: ChainRow[], intentRequestIds: string[] | null): unknown[] {
  const n = rows.length;
  const time = new Array<string>(n), requestId = new Array<string>(n), identity = new Array<string | null>(n), action = new Array<string>(n);
  const namespace = new Array<string | null>(n), path = new Array<string | null>(n), outcome = new Array<string>(n), status = new Array<number>(n);
  const bodies = new Array<string>(n);
  const hashes = Buffer.allocUnsafe((n + 1) * 32);
  for (let i = 0; i < n; i++) {
    const { seq, time: at, draft: entry, body, hash, prevHash } = rows[i]!;
    if (!hash || !prevHash || (i > 0 && (seq !== rows[i - 1]!.seq + 1 || prevHash !== rows[i - 1]!.hash))) throw new Error('audit append: rows must be chained and consecutive');
    time[i] = at;
    requestId[i] = entry.request_id;
    identity[i] = entry.identity?.id ?? null;
    action[i] = entry.action;
    namespace[i] = entry.namespace;
    path[i] = entry.path;
    outcome[i] = entry.outcome;
    status[i] = entry.status;
    bodies[i] = body;
    if (hash.length !== 32 || prevHash.length !== 32) throw new Error('audit append: a chain hash is 32 bytes');
    if (i === 0) hashes.write(prevHash, 0, 'latin1');
    hashes.write(hash, (i + 1) * 32, 'latin1');
  }
  const seq0 = n > 0 ? rows[0]!.seq - 1 : 0;
  const params: unknown[] = [seq0, time, requestId, identity, action, namespace, path, outcome, status, hashes, bodies.join('\n')];
  if (intentRequestIds) params.push(intentRequestIds);
  return params;
}

export function auditRepo(db: Kysely<Database>) {
  return {
    transaction: transactor(db),

    /**
     * Appends chained entries with ONE statement, which also deletes the
     * intents of `intentRequestIds` (audit/intents.ts): an entry and the
     * removal of its intent commit together. Raw SQL: building a multi-row
     * INSERT through the query builder costs more CPU than the insert, and this
     * runs for every group commit. Fails as a whole with a unique violation
     * when another server took one of the sequence numbers.
     */
    async append(rows: ChainRow[], intentRequestIds: string[] | null, tx: Executor = db): Promise<void> {
      if (rows.length === 0) return;
      await tx.executeQuery(CompiledQuery.raw(intentRequestIds ? APPEND_DELETING_INTENTS_SQL : APPEND_SQL, appendParams(rows, intentRequestIds)));
    },

    /** The chain's last entry, or null when it is empty. Read without a lock (see the header). */
    async head(tx: Executor = db): Promise<ChainHead | null> {
      const head = await tx.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
      return head ? { seq: Number(head.seq), hash: head.hash } : null;
    },

    /**
     * Records a signed checkpoint. On conflict the old one is kept: after a
     * truncation, new entries reuse old sequence numbers, and the surviving
     * checkpoint is what lets verify catch it.
     */
    async insertCheckpoint(checkpoint: { seq: number; hash: Uint8Array; signature: Uint8Array }, tx: Executor = db): Promise<void> {
      await tx
        .insertInto('audit_checkpoints')
        .values({ ...checkpoint, time: new Date() })
        .onConflict((oc) => oc.column('seq').doNothing())
        .execute();
    },

    /** Every checkpoint, oldest first. */
    async checkpoints(tx: Executor = db) {
      return tx.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
    },

    /** Up to `limit` entries after `afterSeq`, in chain order: verification walks the chain in pages. */
    async chainPage(afterSeq: number, limit: number, tx: Executor = db) {
      return tx
        .selectFrom('audit_log')
        .select(['seq', 'body', 'prev_hash', 'hash', 'outcome'])
        .where('seq', '>', afterSeq)
        .orderBy('seq')
        .limit(limit)
        .execute();
    },

    /** Entries matching `q` in its order, at most `rows` of them (the caller asks one more than a page to see whether another follows). */
    async search(q: Omit<AuditQuery, 'limit'>, rows: number, tx: Executor = db) {
      let query = tx.selectFrom('audit_log').select(['seq', 'body']);
      if (q.identity) query = query.where('identity', '=', q.identity);
      if (q.namespace) query = query.where('namespace', '=', q.namespace);
      if (q.path) query = query.where(sql<boolean>`starts_with(path, ${q.path})`);
      if (q.action) query = query.where('action', '=', q.action);
      if (q.outcome) query = query.where('outcome', '=', q.outcome);
      if (q.since) query = query.where('time', '>=', q.since);
      if (q.until) query = query.where('time', '<', q.until);
      if (q.cursor !== undefined) query = query.where('seq', q.order === 'asc' ? '>' : '<', q.cursor);
      return query.orderBy('seq', q.order).limit(rows).execute();
    },
  };
}

export type AuditRepo = ReturnType<typeof auditRepo>;
