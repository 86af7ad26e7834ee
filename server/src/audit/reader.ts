/** Reading the audit log: verifying the hash chain and its checkpoints, and searching entries. */
import { sql, type Kysely } from 'kysely';
import type { AuditPage, AuditVerifyResult as VerifyResult } from '@coffer/sdk/api';
import type { Database } from '../storage/schema.js';
import { GENESIS_HASH, chainHash, checkpointValid, sameBytes } from './chain.js';
import type { AuditEntry } from './entry.js';
import { storable } from './storable.js';

export type { VerifyResult };

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

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Walks the whole chain and the checkpoints; reports the first broken link. */
export async function verifyChain(db: Kysely<Database>, checkpointKey: Uint8Array | null): Promise<VerifyResult> {
  const problems: Array<{ seq: number; reason: string }> = [];
  // Only the hashes at checkpointed positions are kept: the walk itself needs O(1) memory.
  const checkpoints = await db.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
  const wanted = new Set(checkpoints.map((cp) => Number(cp.seq)));
  const hashes = new Map<number, Uint8Array>();
  let prev: Uint8Array = GENESIS_HASH;
  let expectedSeq = 1;
  let checked = 0;
  let recovered = 0;
  let after = 0;
  let head: VerifyResult['head'] = null;
  for (;;) {
    const rows = await db
      .selectFrom('audit_log')
      .select(['seq', 'body', 'prev_hash', 'hash', 'outcome'])
      .where('seq', '>', after)
      .orderBy('seq')
      .limit(5000)
      .execute();
    if (rows.length === 0) break;
    for (const row of rows) {
      const seq = Number(row.seq);
      checked++;
      if (row.outcome === 'unknown') recovered++;
      if (problems.length === 0) {
        let bodySeq: unknown;
        try {
          bodySeq = (JSON.parse(row.body) as { seq?: unknown }).seq;
        } catch {
          bodySeq = undefined;
        }
        if (seq !== expectedSeq) problems.push({ seq: expectedSeq, reason: `entry ${expectedSeq} is missing (next is ${seq})` });
        else if (bodySeq !== seq) problems.push({ seq, reason: `entry ${seq} holds the body of entry ${String(bodySeq)}` });
        else if (!sameBytes(row.prev_hash, prev)) problems.push({ seq, reason: `entry ${seq} does not follow entry ${seq - 1} (previous hash differs)` });
        else if (!sameBytes(row.hash, chainHash(row.prev_hash, row.body))) problems.push({ seq, reason: `entry ${seq} was altered (its hash does not match its content)` });
      }
      if (wanted.has(seq)) hashes.set(seq, row.hash);
      prev = row.hash;
      expectedSeq = seq + 1;
      head = { seq, hash: hex(row.hash) };
    }
    after = Number(rows[rows.length - 1]!.seq);
  }
  for (const cp of checkpoints) {
    const seq = Number(cp.seq);
    if (checkpointKey && !checkpointValid(checkpointKey, seq, cp.hash, cp.signature)) {
      problems.push({ seq, reason: `checkpoint at ${seq} has an invalid signature` });
      continue;
    }
    const actual = hashes.get(seq);
    if (!actual) problems.push({ seq, reason: `checkpoint at ${seq} covers entries that are gone (the log was truncated)` });
    else if (!sameBytes(actual, cp.hash)) problems.push({ seq, reason: `the chain up to ${seq} differs from its signed checkpoint` });
  }
  problems.sort((a, b) => a.seq - b.seq);
  const pending = await db.selectFrom('audit_intents').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return {
    ok: problems.length === 0,
    entries_checked: checked,
    checkpoints_checked: checkpoints.length,
    head,
    first_broken: problems[0] ?? null,
    recovered_entries: recovered,
    pending_intents: Number(pending.n),
  };
}

export async function searchLog(db: Kysely<Database>, filter: AuditQuery): Promise<AuditPage> {
  // Stored values are storable: a filter is compared in the same form (and cannot fail the query).
  const q = storable(filter);
  let query = db.selectFrom('audit_log').select(['seq', 'body']);
  if (q.identity) query = query.where('identity', '=', q.identity);
  if (q.namespace) query = query.where('namespace', '=', q.namespace);
  if (q.path) query = query.where(sql<boolean>`starts_with(path, ${q.path})`);
  if (q.action) query = query.where('action', '=', q.action);
  if (q.outcome) query = query.where('outcome', '=', q.outcome);
  if (q.since) query = query.where('time', '>=', q.since);
  if (q.until) query = query.where('time', '<', q.until);
  if (q.cursor !== undefined) query = query.where('seq', q.order === 'asc' ? '>' : '<', q.cursor);
  const rows = await query.orderBy('seq', q.order).limit(q.limit + 1).execute();
  const page = rows.slice(0, q.limit);
  return {
    entries: page.map((r) => JSON.parse(r.body) as AuditEntry),
    next_cursor: rows.length > q.limit ? Number(page[page.length - 1]!.seq) : null,
  };
}
