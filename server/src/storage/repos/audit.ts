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
import { transactor } from './transaction.js';

/** One chained entry as the writer has it (audit/writer.ts builds these; nothing is copied for the INSERT). */
export interface ChainRow {
  entry: {
    seq: number;
    time: string;
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
  hash?: Uint8Array | undefined;
  prevHash?: Uint8Array | undefined;
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
const insertSqlCache = new Map<string, string>();

/**
 * `insert into audit_log (…) values ($1…$12), …` for `rows` rows, built once per
 * size; with `intents`, the last parameter is the array of request ids whose
 * intents the same statement deletes.
 */
function insertSql(rows: number, intents: boolean): string {
  const key = `${rows}:${intents}`;
  let text = insertSqlCache.get(key);
  if (!text) {
    const tuples = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: 12 }, (_, c) => `$${r * 12 + c + 1}`).join(', ')})`);
    const done = intents ? `with done as (delete from audit_intents where request_id = any($${rows * 12 + 1}::text[])) ` : '';
    text = `${done}insert into audit_log (${AUDIT_COLUMNS}) values ${tuples.join(', ')}`;
    if (insertSqlCache.size < 2048) insertSqlCache.set(key, text);
  }
  return text;
}

function rowParams({ entry, body, hash, prevHash }: ChainRow): unknown[] {
  return [
    entry.seq,
    entry.time,
    entry.request_id,
    entry.identity?.id ?? null,
    entry.action,
    entry.namespace,
    entry.path,
    entry.outcome,
    entry.status,
    body,
    prevHash,
    hash,
  ];
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
      const params = rows.flatMap(rowParams);
      if (intentRequestIds) params.push(intentRequestIds);
      await tx.executeQuery(CompiledQuery.raw(insertSql(rows.length, intentRequestIds !== null), params));
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
