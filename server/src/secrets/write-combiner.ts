/**
 * Writes to one namespace, combined within this server.
 *
 * A write holds its secret's row lock from its first statement's answer to its commit: across
 * a client round trip, the event loop's other work and the encryption (and an fsync when the
 * database is durable). Writers of one secret therefore finish one at a time, and every write,
 * contended or not, pays two round trips and a commit of its own. Here, while a write to a
 * namespace is in progress, later writes to it wait in this process; when it is done, up to
 * `max` of them (to one secret or several) are written as ONE transaction — one statement
 * locking their rows (in path order, so groups on any servers never deadlock), one statement
 * storing everything with the commit in the same round trip, one commit (one fsync) for all:
 *
 *  - each secret's writes are judged in arrival order against its locked `current_version`:
 *    a check-and-set write whose expected version is not the current one in that order is
 *    refused (409) alone and takes no version; the others get the next versions, each
 *    encrypted under its own DEK with its own AAD (namespace, secret, version);
 *  - retention is applied as the writes one after another would apply it (a version any of
 *    them would have pruned is pruned, or not stored at all if it is one of the group's);
 *  - each applied request's audit intent is stored in the statement (it commits with the
 *    change or not at all), one usage reservation covers the encryptions, one notification per
 *    secret;
 *  - if the transaction fails where nothing can have committed (a statement PostgreSQL
 *    refused, an error before the last statement was sent), the writes are retried one by one
 *    in order on the single-write path, so a failure concerns only the requests it concerns.
 *    A lost connection during the last statement leaves the outcome unknown: every request of
 *    the group then fails, as a single write does (its audit intent refused: 503).
 *
 * Other servers write the same secrets concurrently: the row locks (taken by the first
 * statement, held to the commit) keep every version unique across them, as for single writes.
 * A job's write (fenced transaction) is never combined (secret-service.ts).
 */
import type { WriteResult } from '@coffer/sdk/api';
import type { ChangeIntent, IntentRow } from '../audit/intents.js';
import { changeEvents, encodeChange } from '../cluster/events.js';
import { CofferError, conflict, namespaceDisabled, notFound } from '../errors.js';
import type { Keyring } from '../keyring/keyring.js';
import type { KekUsage, UsageTicket } from '../keyring/usage.js';
import { isConnectionError, pgErrorCode } from '../storage/errors.js';
import type { Transactor } from '../storage/executor.js';
import type { Repos } from '../storage/repos/index.js';
import type { NewSecretVersion } from '../storage/repos/secrets.js';
import { applyLocally, type Changes } from './changes.js';
import type { WriteRequest } from './secret-service.js';

type Intent = (() => ChangeIntent | null) | undefined;

interface Waiting {
  path: string;
  req: WriteRequest;
  intent: Intent;
  resolve(result: WriteResult): void;
  reject(err: unknown): void;
}

export interface GroupDeps {
  db: Transactor;
  secrets: Pick<Repos['secrets'], 'lockNamespaceAndSecrets' | 'insertVersionsAndPrune'>;
  keyring: Pick<Keyring, 'encryptValue'>;
  changes: Changes;
  usage: KekUsage;
  defaultMaxVersions: number;
  onUsageLimit(namespaceId: string): void;
  /** The single-write path (SecretService), for a lone write and for retries one by one. */
  one(namespace: string, path: string, req: WriteRequest, intent: Intent): Promise<WriteResult>;
}

const encoder = new TextEncoder();

/** The message a refused check-and-set write gets (as the single-write path words it). */
export function casMismatch(path: string, cas: number, current: number): CofferError {
  return conflict(
    'cas_mismatch',
    cas === 0 ? `secret "${path}" already exists (cas=0 writes only new secrets)` : `check-and-set failed: current version is ${current}, not ${cas}`,
  );
}

/** Every write of the group was refused by its check-and-set: nothing to store, roll back. */
class NothingApplied extends Error {}

export class WriteCombiner {
  /** Per namespace with a write in progress here: the writes waiting for it (in arrival order). */
  private readonly waiting = new Map<string, Waiting[]>();

  constructor(
    private readonly deps: GroupDeps,
    private readonly max: number,
  ) {}

  write(namespace: string, path: string, req: WriteRequest, intent: Intent): Promise<WriteResult> {
    const queue = this.waiting.get(namespace);
    if (queue) return new Promise((resolve, reject) => queue.push({ path, req, intent, resolve, reject }));
    this.waiting.set(namespace, []);
    return this.deps.one(namespace, path, req, intent).finally(() => this.next(namespace));
  }

  private next(namespace: string): void {
    const queue = this.waiting.get(namespace)!;
    if (queue.length === 0) {
      this.waiting.delete(namespace);
      return;
    }
    const group = queue.splice(0, this.max);
    const first = group[0]!;
    const run = group.length === 1 ? this.deps.one(namespace, first.path, first.req, first.intent).then(first.resolve, first.reject) : writeGroup(this.deps, namespace, group);
    // writeGroup settles every request itself; this catch only keeps the queue moving.
    void run.catch(() => undefined).finally(() => this.next(namespace));
  }
}

interface Applied {
  w: Waiting;
  secretId: string;
  version: number;
  audited: ChangeIntent | null;
}

/** A secret of the group as its writes, one after another, leave it. */
interface Moved {
  id: string;
  currentVersion: number;
  maxVersions: number;
  upTo: number;
}

/**
 * Writes `group` (at least two writes to secrets of one namespace) as one transaction; settles
 * every request.
 */
export async function writeGroup(d: GroupDeps, namespace: string, group: Waiting[]): Promise<void> {
  const paths = [...new Set(group.map((w) => w.path))];
  const events = paths.map((path) => changeEvents.secret(namespace, path));
  const plaintexts = new Map<Waiting, Uint8Array>();
  const refused = new Map<Waiting, unknown>();
  let applied: Applied[] = [];
  /** The last statement (with the commit) was sent: from then on a failure may hide a commit. */
  let sent = false;
  let retry = false;
  let committed: { namespaceId: string; createdAt: string; ticket: UsageTicket } | undefined;
  try {
    for (const w of group) plaintexts.set(w, encoder.encode(JSON.stringify(w.req.data)));
    const done = await d.db.transaction().execute(async (trx) => {
      refused.clear();
      applied = [];
      const locked = await d.secrets.lockNamespaceAndSecrets(namespace, paths, d.defaultMaxVersions, trx);
      if (!locked) throw notFound(`namespace "${namespace}" not found`);
      const { namespace: ns, secrets } = locked;
      if (ns.deletion_date) throw namespaceDisabled(namespace, ns.deletion_date);
      // Each secret's writes in arrival order, as if each had locked the row after the one before.
      const moved = new Map<string, Moved>();
      for (const path of paths) {
        const secret = secrets.get(path);
        if (!secret) throw new Error('the upsert of a secret in a live namespace returned no row');
        moved.set(path, { id: secret.id, currentVersion: secret.current_version, maxVersions: secret.max_versions, upTo: 0 });
      }
      for (const w of group) {
        const m = moved.get(w.path)!;
        if (w.req.cas !== undefined && w.req.cas !== m.currentVersion) {
          refused.set(w, casMismatch(w.path, w.req.cas, m.currentVersion));
          continue;
        }
        let audited: ChangeIntent | null;
        try {
          // Taken once the write is sure to take a version (as the single path: a refused write leaves no intent).
          audited = w.intent?.() ?? null;
        } catch (err) {
          refused.set(w, err);
          continue;
        }
        m.currentVersion += 1;
        if (w.req.max_versions !== undefined) m.maxVersions = w.req.max_versions;
        m.upTo = Math.max(m.upTo, m.currentVersion - m.maxVersions);
        applied.push({ w, secretId: m.id, version: m.currentVersion, audited });
      }
      if (applied.length === 0) throw new NothingApplied();
      // A version a later write of the group prunes at once is neither encrypted nor stored.
      const kept = applied.filter((a) => a.version > moved.get(a.w.path)!.upTo);
      const rows: NewSecretVersion[] = [];
      let kekVersion: number | undefined;
      for (const a of kept) {
        const encrypted = await d.keyring.encryptValue({ namespaceId: ns.id, secretId: a.secretId, version: a.version }, ns.current_kek_version, plaintexts.get(a.w)!, trx);
        if (kekVersion !== undefined && encrypted.kekVersion !== kekVersion) throw new Error('the writes of one group were encrypted under different KEK versions');
        kekVersion = encrypted.kekVersion;
        rows.push({
          secret_id: a.secretId,
          version: a.version,
          type: a.w.req.type,
          metadata: JSON.stringify(a.w.req.metadata),
          kek_version: encrypted.kekVersion,
          wrapped_dek: encrypted.wrappedDek,
          ciphertext: encrypted.ciphertext,
        });
      }
      const usage = d.usage.planMany(ns.id, kekVersion!, rows.length);
      const reserve = usage.reserve;
      const intents: IntentRow[] = applied.flatMap((a) => (a.audited ? [a.audited.row] : []));
      // Only the secrets a write moved: one whose writes were all refused keeps its row as it was.
      const touchedPaths = [...new Set(applied.map((a) => a.w.path))];
      const touched = touchedPaths.map((path) => moved.get(path)!);
      const channel = d.changes.feed.channel;
      sent = true;
      const stored = await d.secrets.insertVersionsAndPrune(touched, rows, trx, {
        reserve: reserve > 0 ? { namespaceId: ns.id, kekVersion: kekVersion!, n: reserve } : undefined,
        intents,
        notify: channel === undefined ? undefined : { channel, payloads: touchedPaths.map((path) => encodeChange(changeEvents.secret(namespace, path))) },
        last: true,
      });
      return { namespaceId: ns.id, createdAt: stored.created_at.toISOString(), ticket: usage.ticket(stored.encryptions ?? 0) };
    });
    committed = done;
  } catch (err) {
    if (err instanceof NothingApplied) {
      for (const [w, e] of refused) w.reject(e);
    } else if (!sent && err instanceof CofferError) {
      // The namespace's verdict (missing, being shredded) or the keyring's: every write's.
      for (const w of group) w.reject(err);
    } else if (!sent || (pgErrorCode(err) !== undefined && !isConnectionError(err))) {
      // Nothing committed (PostgreSQL refused a statement, so the transaction rolled back): one by one.
      retry = true;
    } else {
      // The outcome is unknown: no request may be told its write failed cleanly, or that it took effect.
      const audited = new Map(applied.map((a) => [a.w, a.audited]));
      for (const w of group) {
        const intent = audited.get(w);
        w.reject(intent ? intent.refuse(err) : err);
      }
    }
  } finally {
    for (const event of events) applyLocally(d.changes, event);
    for (const p of plaintexts.values()) p.fill(0);
  }
  if (committed) {
    // Committed: every applied request hears so (nothing after this may turn it into a failure).
    for (const a of applied) a.audited?.stored();
    for (const a of applied) a.w.resolve({ namespace, path: a.w.path, version: a.version, created_at: committed.createdAt });
    for (const [w, err] of refused) w.reject(err);
    committed.ticket.commit();
    if (committed.ticket.overLimit) d.onUsageLimit(committed.namespaceId);
  }
  if (!retry) return;
  for (const w of group) await d.one(namespace, w.path, w.req, w.intent).then(w.resolve, w.reject);
}
