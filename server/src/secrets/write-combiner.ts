/**
 * Writes of one secret, combined within this server.
 *
 * A write holds its secret's row lock from its first statement's answer to its commit: across
 * a client round trip, the event loop's other work and the encryption (and an fsync when the
 * database is durable). Writers of one secret therefore finish one at a time. Here, while a
 * write of a (namespace, path) is in progress, later writes of it wait in this process; when it
 * is done, up to `max` of them are written as ONE transaction — one lock, one round trip for the
 * last statement, one commit for all:
 *
 *  - they are judged in arrival order against the locked `current_version`: a check-and-set
 *    write whose expected version is not the current one in that order is refused (409) alone
 *    and takes no version; the others get the next versions, each encrypted under its own DEK
 *    with its own AAD (namespace, secret, version);
 *  - retention is applied as the writes one after another would apply it (a version any of
 *    them would have pruned is pruned, or not stored at all if it is one of the group's);
 *  - each applied request's audit intent is stored in the statement (it commits with the
 *    change or not at all), one usage reservation covers the encryptions, one notification;
 *  - if the transaction fails where nothing can have committed (a statement PostgreSQL
 *    refused, an error before the last statement was sent), the writes are retried one by one
 *    in order on the single-write path, so a failure concerns only the requests it concerns.
 *    A lost connection during the last statement leaves the outcome unknown: every request of
 *    the group then fails, as a single write does (its audit intent refused: 503).
 *
 * Other servers write the same secret concurrently: the row lock (taken by the first
 * statement, held to the commit) keeps every version unique across them, as for single writes.
 */
import { randomUUID } from 'node:crypto';
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
  req: WriteRequest;
  intent: Intent;
  resolve(result: WriteResult): void;
  reject(err: unknown): void;
}

export interface GroupDeps {
  db: Transactor;
  secrets: Pick<Repos['secrets'], 'lockNamespaceAndSecret' | 'insertVersionsAndPrune'>;
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
  /** Per secret with a write in progress here: the writes waiting for it (in arrival order). */
  private readonly waiting = new Map<string, Waiting[]>();

  constructor(
    private readonly deps: GroupDeps,
    private readonly max: number,
  ) {}

  write(namespace: string, path: string, req: WriteRequest, intent: Intent): Promise<WriteResult> {
    const key = `${namespace}\u0000${path}`;
    const queue = this.waiting.get(key);
    if (queue) return new Promise((resolve, reject) => queue.push({ req, intent, resolve, reject }));
    this.waiting.set(key, []);
    return this.deps.one(namespace, path, req, intent).finally(() => this.next(key, namespace, path));
  }

  private next(key: string, namespace: string, path: string): void {
    const queue = this.waiting.get(key)!;
    if (queue.length === 0) {
      this.waiting.delete(key);
      return;
    }
    const group = queue.splice(0, this.max);
    const run =
      group.length === 1
        ? this.deps.one(namespace, path, group[0]!.req, group[0]!.intent).then(group[0]!.resolve, group[0]!.reject)
        : writeGroup(this.deps, namespace, path, group);
    // writeGroup settles every request itself; this catch only keeps the queue moving.
    void run.catch(() => undefined).finally(() => this.next(key, namespace, path));
  }
}

interface Applied {
  w: Waiting;
  version: number;
  audited: ChangeIntent | null;
}

/** Writes `group` (at least two writes of one secret) as one transaction; settles every request. */
export async function writeGroup(d: GroupDeps, namespace: string, path: string, group: Waiting[]): Promise<void> {
  const event = changeEvents.secret(namespace, path);
  const plaintexts = group.map((w) => encoder.encode(JSON.stringify(w.req.data)));
  const refused = new Map<Waiting, unknown>();
  let applied: Applied[] = [];
  /** The last statement (with the commit) was sent: from then on a failure may hide a commit. */
  let sent = false;
  let retry = false;
  try {
    const done = await d.db.transaction().execute(async (trx) => {
      refused.clear();
      applied = [];
      const locked = await d.secrets.lockNamespaceAndSecret(namespace, { id: randomUUID(), path, defaultMaxVersions: d.defaultMaxVersions }, trx);
      if (!locked) throw notFound(`namespace "${namespace}" not found`);
      const { namespace: ns, secret } = locked;
      if (ns.deletion_date) throw namespaceDisabled(namespace, ns.deletion_date);
      if (!secret) throw new Error('the upsert of a secret in a live namespace returned no row');
      // The writes in arrival order, as if each had locked the row after the one before.
      let current = secret.current_version;
      let maxVersions = secret.max_versions;
      let upTo = 0;
      const indexOf = new Map<Waiting, number>();
      group.forEach((w, i) => indexOf.set(w, i));
      for (const w of group) {
        if (w.req.cas !== undefined && w.req.cas !== current) {
          refused.set(w, casMismatch(path, w.req.cas, current));
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
        current += 1;
        if (w.req.max_versions !== undefined) maxVersions = w.req.max_versions;
        upTo = Math.max(upTo, current - maxVersions);
        applied.push({ w, version: current, audited });
      }
      if (applied.length === 0) throw new NothingApplied();
      // A version a later write of the group prunes at once is neither encrypted nor stored.
      const kept = applied.filter((a) => a.version > upTo);
      const rows: Omit<NewSecretVersion, 'secret_id'>[] = [];
      const plans: ReturnType<KekUsage['plan']>[] = [];
      let kekVersion: number | undefined;
      for (const a of kept) {
        const encrypted = await d.keyring.encryptValue(
          { namespaceId: ns.id, secretId: secret.id, version: a.version },
          ns.current_kek_version,
          plaintexts[indexOf.get(a.w)!]!,
          trx,
        );
        if (kekVersion !== undefined && encrypted.kekVersion !== kekVersion) throw new Error('the writes of one group were encrypted under different KEK versions');
        kekVersion = encrypted.kekVersion;
        plans.push(d.usage.plan(ns.id, encrypted.kekVersion));
        rows.push({
          version: a.version,
          type: a.w.req.type,
          metadata: JSON.stringify(a.w.req.metadata),
          kek_version: encrypted.kekVersion,
          wrapped_dek: encrypted.wrappedDek,
          ciphertext: encrypted.ciphertext,
        });
      }
      const reserve = plans.reduce((n, p) => n + p.reserve, 0);
      const intents: IntentRow[] = applied.flatMap((a) => (a.audited ? [a.audited.row] : []));
      sent = true;
      const stored = await d.secrets.insertVersionsAndPrune({ id: secret.id, currentVersion: current, maxVersions }, rows, upTo, trx, {
        reserve: reserve > 0 ? { namespaceId: ns.id, kekVersion: kekVersion!, n: reserve } : undefined,
        intents,
        notify: d.changes.feed.channel === undefined ? undefined : { channel: d.changes.feed.channel, payload: encodeChange(event) },
        last: true,
      });
      const tickets: UsageTicket[] = plans.map((p) => p.ticket(stored.encryptions ?? 0));
      return { namespaceId: ns.id, createdAt: stored.created_at.toISOString(), tickets };
    });
    for (const a of applied) a.audited?.stored();
    let overLimit = false;
    for (const t of done.tickets) {
      t.commit();
      overLimit ||= t.overLimit;
    }
    if (overLimit) d.onUsageLimit(done.namespaceId);
    for (const a of applied) a.w.resolve({ namespace, path, version: a.version, created_at: done.createdAt });
    for (const [w, err] of refused) w.reject(err);
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
    applyLocally(d.changes, event);
    for (const p of plaintexts) p.fill(0);
  }
  if (!retry) return;
  for (const w of group) await d.one(namespace, path, w.req, w.intent).then(w.resolve, w.reject);
}
