/**
 * Secrets and their versions. Every write creates a new version with its own
 * DEK under the namespace's current KEK version; reads decrypt one version.
 * Plaintext exists only in the request that asked for it, and in the values
 * kept with cached bulk-read pages and the response bodies kept with cached
 * latest versions (read-cache.ts: bounded, zeroed when dropped).
 */
import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Metadata, SecretData, SecretHistory, SecretVersion, WriteResult } from '@coffer/sdk/api';
import { CofferError, conflict, namespaceDisabled, notFound } from '../errors.js';
import { currentFence } from '../storage/job-fence.js';
import type { KekUsage, UsageTicket } from '../keyring/usage.js';
import type { Keyring } from '../keyring/keyring.js';
import type { Executor, Transactor } from '../storage/executor.js';
import type { Repos } from '../storage/repos/index.js';
import type { VersionCompanions } from '../storage/repos/secrets.js';
import type { ChangeIntent } from '../audit/intents.js';
import type { Database } from '../storage/schema.js';
import { checkFolder, checkSecretPath } from './names.js';
import type { NamespaceService } from './namespace-service.js';
import type { PageRequest } from './pagination.js';
import { listFolder, type MayList } from './listing.js';
import { validateSecretData, type SecretType } from './types.js';
import { changeEvents, encodeChange } from '../cluster/events.js';
import { applyLocally, publishChange, type Changes } from './changes.js';
import type { CachedVersion } from './read-cache.js';
import { createdIso, namespaceHead, versionJson } from './version-json.js';
import { bulkRead, type BulkAccess } from './bulk-read.js';
import { casMismatch, WriteCombiner } from './write-combiner.js';

export interface WriteRequest {
  data: SecretData;
  type: SecretType;
  metadata: Metadata;
  /** Check-and-set: the version the caller believes is current (0 = must not exist yet). */
  cas?: number | undefined;
  max_versions?: number | undefined;
}

/** A stored version with its namespace's shredding state. */
type StoredVersion = CachedVersion & { deletion_date: Date | null };

export type VersionAction = 'delete' | 'undelete' | 'destroy';

/** The tables a secret's life touches. */
export type SecretRepos = Pick<Repos, 'namespaces' | 'secrets'>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const iso = (d: Date | null) => (d ? d.toISOString() : null);

export class SecretService {
  /** Called after a write pushed its KEK version's encryption count to the rotation threshold. */
  onUsageLimit: (namespaceId: string) => void = () => undefined;

  constructor(
    private readonly db: Transactor,
    private readonly repos: SecretRepos,
    private readonly keyring: Pick<Keyring, 'encryptValue' | 'decryptValue' | 'decryptValues'>,
    private readonly namespaces: Pick<NamespaceService, 'resolve'>,
    private readonly changes: Changes,
    private readonly defaultMaxVersions: number,
    private readonly usage: KekUsage,
    /** Most writes to one namespace combined into one transaction (write-combiner.ts); 1: none. */
    combineMax = 1,
  ) {
    this.combiner =
      combineMax > 1
        ? new WriteCombiner(
            {
              db,
              secrets: repos.secrets,
              keyring,
              changes,
              usage,
              defaultMaxVersions,
              onUsageLimit: (namespaceId) => this.onUsageLimit(namespaceId),
              one: (namespace, path, req, intent) => this.writeOne(namespace, path, req, intent),
            },
            combineMax,
          )
        : undefined;
  }

  private readonly combiner: WriteCombiner | undefined;

  /** Runs a change in one transaction, announcing it to other servers and to the read cache. */
  private async change<T>(namespace: string, path: string, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    const event = changeEvents.secret(namespace, path);
    try {
      return await this.db.transaction().execute(async (trx) => {
        const result = await fn(trx);
        await publishChange(this.changes, trx, event);
        return result;
      });
    } finally {
      applyLocally(this.changes, event);
    }
  }

  /**
   * Writes a new version in two statements and the commit: the upsert that takes the secret's row
   * lock, then (after the encryption) one statement storing the version with everything else the
   * write commits — the retention delete, a usage-counter reservation, the request's audit intent
   * (`intent`, which must commit with the change or not at all) and the change-feed notification —
   * so concurrent writers of one secret wait for one round trip and a commit each, not five.
   * Writes to a namespace that arrive while one is in progress here are combined: they wait,
   * then go together as one transaction (write-combiner.ts).
   */
  async write(namespace: string, path: string, req: WriteRequest, intent?: () => ChangeIntent | null): Promise<WriteResult> {
    checkSecretPath(path);
    validateSecretData(req.type, req.data);
    // A job's write stays on its own: its fenced transaction must not carry requests' writes.
    if (this.combiner && currentFence() === null) return this.combiner.write(namespace, path, req, intent);
    return this.writeOne(namespace, path, req, intent);
  }

  /** One validated write in its own transaction (write-combiner.ts also uses it for retries). */
  private async writeOne(namespace: string, path: string, req: WriteRequest, intent?: () => ChangeIntent | null): Promise<WriteResult> {
    const plaintext = encoder.encode(JSON.stringify(req.data));
    const event = changeEvents.secret(namespace, path);
    let ticket: UsageTicket | undefined;
    let namespaceId = '';
    try {
      const result = await this.db.transaction().execute(async (trx) => {
        // Lock the namespace row against a concurrent delete or KEK rotation for the length of the write,
        // and in the same statement create the secret or take the next version number, row-locking it,
        // so concurrent writers each get their own version and none is lost.
        const locked = await this.repos.secrets.lockNamespaceAndUpsert(
          namespace,
          { id: randomUUID(), path, maxVersions: req.max_versions ?? null, defaultMaxVersions: this.defaultMaxVersions },
          trx,
        );
        if (!locked) throw notFound(`namespace "${namespace}" not found`);
        const { namespace: ns, secret } = locked;
        if (ns.deletion_date) throw namespaceDisabled(namespace, ns.deletion_date);
        if (!secret) throw new Error('the upsert of a secret in a live namespace returned no row');
        namespaceId = ns.id;
        const version = secret.current_version;
        if (req.cas !== undefined && req.cas !== version - 1) throw casMismatch(path, req.cas, version - 1);
        const encrypted = await this.keyring.encryptValue(
          { namespaceId: ns.id, secretId: secret.id, version },
          ns.current_kek_version,
          plaintext,
          trx,
        );
        const usage = this.usage.plan(ns.id, encrypted.kekVersion);
        const row = {
          secret_id: secret.id,
          version,
          type: req.type,
          metadata: JSON.stringify(req.metadata),
          kek_version: encrypted.kekVersion,
          wrapped_dek: encrypted.wrappedDek,
          ciphertext: encrypted.ciphertext,
        };
        const companions: VersionCompanions = {
          reserve: usage.reserve > 0 ? { namespaceId: ns.id, kekVersion: encrypted.kekVersion, n: usage.reserve } : undefined,
          notify: this.changes.feed.channel === undefined ? undefined : { channel: this.changes.feed.channel, payload: encodeChange(event) },
          last: true,
        };
        // Taken last: a write refused before this point has no intent to leave behind.
        const audited = intent?.() ?? null;
        if (audited) companions.intent = audited.row;
        // Retention: versions beyond max_versions are removed with their DEKs, in the same statement.
        const upTo = version - secret.max_versions;
        let stored: { created_at: Date; encryptions: number | null };
        try {
          stored = await this.repos.secrets.insertVersionAndPrune(row, upTo, trx, companions);
        } catch (err) {
          throw audited ? audited.refuse(err) : err;
        }
        audited?.stored();
        ticket = usage.ticket(stored.encryptions ?? 0);
        return { namespace, path, version, created_at: stored.created_at.toISOString() };
      });
      ticket?.commit();
      if (ticket?.overLimit) this.onUsageLimit(namespaceId);
      return result;
    } finally {
      applyLocally(this.changes, event);
      plaintext.fill(0);
    }
  }

  /**
   * `minVersion`: the reader has seen that version (its own write, perhaps on another server), so a
   * cached older one is not served; the database always has the newest committed version. Closes
   * the window between a commit on one server and its notification reaching this one.
   */
  async read(namespace: string, path: string, version?: number, minVersion?: number): Promise<SecretVersion> {
    checkSecretPath(path);
    const row = version === undefined ? await this.readLatestRow(namespace, path, minVersion) : await this.readRow(namespace, path, version);
    await this.checkReadable(namespace, path, version, row);
    return this.view(namespace, path, row!);
  }

  /**
   * `read` of the latest version as the UTF-8 JSON text `JSON.stringify` makes of its answer (built
   * like a bulk fragment: the plaintext is the JSON text `write` made of the data). The caller owns
   * the buffer: it sends it, then zeroes it. A cached version keeps this text (read-cache.ts says
   * under which rules), so a repeated read opens no envelope; each caller gets its own copy, so a
   * change zeroing the kept one can never reach a response still waiting for its audit entry.
   */
  async readLatestJson(namespace: string, path: string, minVersion?: number): Promise<Buffer> {
    checkSecretPath(path);
    const cache = this.changes.cache;
    let cached = cache.get(namespace, path, minVersion);
    if (cached) {
      const kept = cache.getBody(cached);
      // Copied before any await: the kept body may be zeroed as soon as this request yields.
      if (kept) return Buffer.from(kept);
    }
    let row: Omit<StoredVersion, 'deletion_date'> & { deletion_date?: Date | null } | undefined = cached;
    if (!cached) ({ row, cached } = await this.loadLatestRow(namespace, path));
    await this.checkReadable(namespace, path, undefined, row);
    const plaintext = await this.open(path, row!);
    let body: Buffer;
    try {
      body = versionJson(namespaceHead(namespace), path, row!, plaintext);
    } finally {
      plaintext.fill(0);
    }
    // Offered to the version's entry (if it is still the one cached, it keeps this copy).
    if (cached && cache.keepsValues) cache.setBody(cached, Buffer.from(body));
    return body;
  }

  /** Throws the error a read of `row` (version `version`, or the latest) answers with, if any. */
  private async checkReadable(
    namespace: string,
    path: string,
    version: number | undefined,
    row: Pick<StoredVersion, 'version' | 'deleted_at' | 'destroyed_at'> & { deletion_date?: Date | null } | undefined,
  ): Promise<void> {
    if (!row) {
      await this.namespaces.resolve(namespace);
      throw notFound(version === undefined ? `secret "${path}" not found` : `version ${version} of secret "${path}" not found`);
    }
    if (row.deletion_date) throw namespaceDisabled(namespace, row.deletion_date);
    if (row.destroyed_at) {
      throw new CofferError('not_found', `version ${row.version} of secret "${path}" was destroyed`);
    }
    if (row.deleted_at) {
      throw new CofferError('not_found', `version ${row.version} of secret "${path}" is deleted (undelete it to read it)`);
    }
  }

  /** A stored version's plaintext (the caller zeroes it). */
  private open(path: string, row: Omit<CachedVersion, 'deleted_at' | 'destroyed_at'>): Promise<Uint8Array> {
    if (!row.wrapped_dek || !row.ciphertext || row.kek_version === null) {
      throw new CofferError('not_found', `version ${row.version} of secret "${path}" was destroyed`);
    }
    return this.keyring.decryptValue(
      { namespaceId: row.namespace_id, secretId: row.secret_id, version: row.version },
      { kekVersion: row.kek_version, wrappedDek: row.wrapped_dek, ciphertext: row.ciphertext },
    );
  }

  /** Decrypts a stored version into what the API returns. */
  private async view(
    namespace: string,
    path: string,
    row: Omit<CachedVersion, 'deleted_at' | 'destroyed_at'>,
  ): Promise<SecretVersion> {
    const plaintext = await this.open(path, row);
    let data: SecretData;
    try {
      data = JSON.parse(decoder.decode(plaintext)) as SecretData;
    } finally {
      plaintext.fill(0);
    }
    return { namespace, path, version: row.version, type: row.type as SecretType, data, metadata: row.metadata, created_at: createdIso(row.created_at) };
  }

  /** The latest version's stored row: from the read cache, or the database (then cached). */
  private async readLatestRow(namespace: string, path: string, minVersion?: number): Promise<StoredVersion | undefined> {
    const cache = this.changes.cache;
    const cached = cache.get(namespace, path, minVersion);
    if (cached) return { ...cached, deletion_date: null };
    return (await this.loadLatestRow(namespace, path)).row;
  }

  /** The latest version's row from the database, and the version the cache took of it (if any). */
  private async loadLatestRow(namespace: string, path: string): Promise<{ row: StoredVersion | undefined; cached?: CachedVersion }> {
    const cache = this.changes.cache;
    const generation = cache.generation;
    const row = await this.readRow(namespace, path);
    // A disabled namespace's rows are never cached: scheduling its shredding emptied its entries.
    if (row && !row.deletion_date) {
      const { deletion_date: _, ...version } = row;
      cache.set(namespace, path, version, generation);
      return { row, cached: version };
    }
    return { row };
  }

  /** One query (the read path's only one when the KEK is cached). */
  private readRow(namespace: string, path: string, version?: number): Promise<StoredVersion | undefined> {
    return this.repos.secrets.readVersion(namespace, path, version);
  }

  /**
   * Lists a folder: its secrets and sub-folders (ending in "/"), sorted, one
   * page at a time. With `recursive`, every secret path under the folder.
   * Only names `mayList` lets the caller see appear (listing.ts has the rule).
   */
  async list(
    namespace: string,
    folder: string,
    page: PageRequest,
    recursive: boolean,
    mayList: MayList,
  ): Promise<{ namespace: string; folder: string; keys: string[]; next_cursor: string | null }> {
    checkFolder(folder);
    const ns = await this.namespaces.resolve(namespace);
    return { namespace, folder, ...(await listFolder(this.repos.secrets, ns.id, folder, page, recursive, mayList)) };
  }

  /**
   * The latest version of every secret under a folder, decrypted, in path
   * order — what a pipeline injects. Secrets the caller may `read` are
   * returned; those it may only list (listing.ts's rule) are named in
   * `withheld`, so a partial set is never mistaken for the whole; the rest are
   * not named. Deleted and destroyed latest versions are skipped. Nothing
   * visible at all under the folder is a 404: a misspelt folder is not empty.
   *
   * Returns the BulkPage as the UTF-8 JSON text `JSON.stringify` makes of it,
   * built from one fragment per secret: a value's plaintext is the JSON text
   * `write` made of its data, so it goes into its fragment as it is, without a
   * parse and a second stringify. A fragment is kept with its cached folder page
   * (read-cache.ts says under which rules), so a repeated bulk read opens no
   * envelope. It cannot leave before the request's audit entry is durable, so
   * the text is one body, not a stream; the caller zeroes it once sent.
   */
  bulkRead(namespace: string, folder: string, page: PageRequest, access: BulkAccess): Promise<Buffer> {
    return bulkRead({ namespaces: this.namespaces, secrets: this.repos.secrets, keyring: this.keyring, cache: this.changes.cache }, namespace, folder, page, access);
  }

  async history(namespace: string, path: string): Promise<SecretHistory> {
    checkSecretPath(path);
    const secret = await this.findSecret(undefined, namespace, path);
    const versions = await this.repos.secrets.history(secret.id);
    return {
      namespace,
      path,
      current_version: secret.current_version,
      max_versions: secret.max_versions,
      created_at: secret.created_at.toISOString(),
      updated_at: secret.updated_at.toISOString(),
      versions: versions.map((v) => ({
        version: v.version,
        type: v.type as SecretType,
        metadata: v.metadata,
        created_at: v.created_at.toISOString(),
        deleted_at: iso(v.deleted_at),
        destroyed_at: iso(v.destroyed_at),
      })),
    };
  }

  /**
   * Soft-deletes, undeletes or destroys versions (default: the latest). All
   * named versions must exist, or nothing changes. Destroy erases the wrapped
   * DEK and ciphertext: that version can never be read again.
   */
  async changeVersions(
    namespace: string,
    path: string,
    action: VersionAction,
    versions?: number[],
  ): Promise<{ namespace: string; path: string; versions: number[] }> {
    checkSecretPath(path);
    return this.change(namespace, path, async (trx) => {
      const secret = await this.findSecret(trx, namespace, path, true);
      const wanted = [...new Set(versions && versions.length > 0 ? versions : [secret.current_version])].sort((a, b) => a - b);
      const existing = await this.repos.secrets.findVersions(secret.id, wanted, trx);
      const found = new Set(existing.map((v) => v.version));
      const missing = wanted.filter((v) => !found.has(v));
      if (missing.length > 0) throw notFound(`secret "${path}" has no version ${missing.join(', ')}`);
      if (action === 'undelete') {
        const destroyed = existing.filter((v) => v.destroyed_at).map((v) => v.version);
        if (destroyed.length > 0) {
          throw conflict('conflict', `version ${destroyed.join(', ')} of "${path}" was destroyed and cannot be undeleted`);
        }
      }
      if (action === 'delete') {
        await this.repos.secrets.markDeleted(secret.id, wanted, new Date(), trx);
      } else if (action === 'undelete') {
        await this.repos.secrets.undelete(secret.id, wanted, trx);
      } else {
        await this.repos.secrets.destroyVersions(secret.id, wanted, new Date(), trx);
      }
      return { namespace, path, versions: wanted };
    });
  }

  /** Writes an earlier version's content as the new latest version. */
  async rollback(namespace: string, path: string, version: number, cas?: number): Promise<WriteResult> {
    const old = await this.read(namespace, path, version);
    return this.write(namespace, path, {
      data: old.data,
      type: old.type as SecretType,
      metadata: old.metadata,
      cas,
    });
  }

  /** Removes a secret with all its versions and their DEKs. */
  async purge(namespace: string, path: string): Promise<{ namespace: string; path: string; versions_removed: number }> {
    checkSecretPath(path);
    return this.change(namespace, path, async (trx) => {
      const secret = await this.findSecret(trx, namespace, path, true);
      const removed = await this.repos.secrets.purge(secret.id, trx);
      return { namespace, path, versions_removed: removed };
    });
  }

  private async findSecret(db: Executor | undefined, namespace: string, path: string, lock = false) {
    const secret = await this.repos.secrets.find(namespace, path, lock, db);
    if (secret?.deletion_date) throw namespaceDisabled(namespace, secret.deletion_date);
    if (!secret) {
      // Same executor: inside a transaction on PGlite, any other query would wait forever.
      await this.namespaces.resolve(namespace, db);
      throw notFound(`secret "${path}" not found`);
    }
    return secret;
  }
}
