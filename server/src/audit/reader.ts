/** Reading the audit log: verifying the hash chain and its checkpoints, and searching entries. */
import type { AuditPage, AuditVerifyResult as VerifyResult } from '@coffer/sdk/api';
import type { AuditQuery, AuditRepo } from '../storage/repos/audit.js';
import type { AuditIntentsRepo } from '../storage/repos/audit-intents.js';
import { GENESIS_HASH, chainHash, checkpointValid, sameBytes } from './chain.js';
import type { AuditEntry } from './entry.js';
import { storable } from './storable.js';

export type { AuditQuery, VerifyResult };

/** What reading the log needs from storage. */
export interface ReaderStore {
  audit: Pick<AuditRepo, 'checkpoints' | 'chainPage' | 'search'>;
  intents: Pick<AuditIntentsRepo, 'count'>;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Walks the whole chain and the checkpoints; reports the first broken link. */
export async function verifyChain(store: ReaderStore, checkpointKey: Uint8Array | null): Promise<VerifyResult> {
  const problems: Array<{ seq: number; reason: string }> = [];
  // Only the hashes at checkpointed positions are kept: the walk itself needs O(1) memory.
  const checkpoints = await store.audit.checkpoints();
  const wanted = new Set(checkpoints.map((cp) => Number(cp.seq)));
  const hashes = new Map<number, Uint8Array>();
  let prev: Uint8Array = GENESIS_HASH;
  let expectedSeq = 1;
  let checked = 0;
  let recovered = 0;
  let after = 0;
  let head: VerifyResult['head'] = null;
  for (;;) {
    const rows = await store.audit.chainPage(after, 5000);
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
  const pending = await store.intents.count();
  return {
    ok: problems.length === 0,
    entries_checked: checked,
    checkpoints_checked: checkpoints.length,
    head,
    first_broken: problems[0] ?? null,
    recovered_entries: recovered,
    pending_intents: pending,
  };
}

export async function searchLog(store: ReaderStore, filter: AuditQuery): Promise<AuditPage> {
  // Stored values are storable: a filter is compared in the same form (and cannot fail the query).
  const q = storable(filter);
  const rows = await store.audit.search(q, q.limit + 1);
  const page = rows.slice(0, q.limit);
  return {
    entries: page.map((r) => JSON.parse(r.body) as AuditEntry),
    next_cursor: rows.length > q.limit ? Number(page[page.length - 1]!.seq) : null,
  };
}
