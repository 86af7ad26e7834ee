/**
 * Namespaces: the unit of key isolation. Each has its own versioned KEK,
 * created with it (v1) and destroyed with it.
 */
import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { KekRotation, NamespaceDetail, NamespacePage, NamespaceSummary } from '@coffer/sdk/api';
import { badRequest, conflict, namespaceDisabled, notFound } from '../errors.js';
import type { KeyMaterial } from '../crypto/aead.js';
import type { Keyring } from '../keyring/keyring.js';
import type { Executor, Transactor } from '../storage/executor.js';
import type { Repos } from '../storage/repos/index.js';
import { namespaceKeysRepo } from '../storage/repos/namespace-keys.js';
import { secretsRepo } from '../storage/repos/secrets.js';
import type { Database, KekOrigin } from '../storage/schema.js';
import { isUniqueViolation } from '../storage/errors.js';
import { checkNamespaceName } from './names.js';
import { collectVisible, takePage, type PageRequest } from './pagination.js';
import { changeEvents } from '../cluster/events.js';
import { applyLocally, publishChange, type Changes } from './changes.js';

export interface NamespaceRef {
  id: string;
  name: string;
  currentKekVersion: number;
}

export interface RotateKekOptions {
  /** 256-bit KEK material to import (BYOK). The caller keeps ownership and zeroes it afterwards. */
  material?: KeyMaterial;
  /** Defaults to 'external' with `material`, 'generated' without. */
  origin?: KekOrigin;
}

const iso = (d: Date) => d.toISOString();

/** The tables a namespace's life touches. */
export type NamespaceRepos = Pick<Repos, 'namespaces' | 'namespaceKeys' | 'secrets' | 'rewrapJobs' | 'kmsKeys'>;

export class NamespaceService {
  /** Called after a rotation commits (wakes the rewrap job runner). */
  /** Before a namespace's rows are deleted: the KMS destroys its key objects in the HSM (set in app/compose.ts). */
  beforeDelete: (namespaceId: string, trx: Transaction<Database>) => Promise<void> = async () => undefined;
  onKekRotated: (namespaceId: string) => void = () => undefined;

  constructor(
    private readonly db: Transactor,
    private readonly repos: NamespaceRepos,
    private readonly keyring: Pick<Keyring, 'wrapKekMaterial' | 'generateWrappedKek' | 'rootVersion' | 'evictNamespace'>,
    private readonly changes: Changes,
  ) {}

  /**
   * Adds a new KEK version to a namespace — fresh random material, or the
   * given material (BYOK import, origin 'external') — and makes it the
   * version every new write uses, at once. Older versions become 'retiring'
   * and the namespace's rewrap job restarts towards the new version; versions
   * no DEK references are retired immediately. One transaction: the namespace
   * row is locked against in-flight writes (they hold it FOR SHARE), so no
   * write can commit a DEK under an older version after this commits.
   */
  async rotateKek(name: string, options: RotateKekOptions = {}, executor?: Transaction<Database>): Promise<KekRotation> {
    checkNamespaceName(name);
    const origin = options.origin ?? (options.material ? 'external' : 'generated');
    if (origin === 'external' && !options.material) throw badRequest('an external KEK version needs its key material');
    if (origin === 'generated' && options.material) throw badRequest('imported key material has origin "external"');
    const run = async (trx: Transaction<Database>) => {
      const { namespaces, namespaceKeys, secrets, rewrapJobs } = this.repos;
      const ns = await namespaces.lockByName(name, trx);
      if (!ns) throw notFound(`namespace "${name}" not found`);
      if (ns.deletion_date) throw namespaceDisabled(name, ns.deletion_date);
      const version = await namespaceKeys.nextVersion(ns.id, trx);
      const wrapped = await this.keyring.wrapKekMaterial(ns.id, version, options.material);
      const inserted = await namespaceKeys.insertActive(
        { namespace_id: ns.id, version, wrapped_key: wrapped, root_version: this.keyring.rootVersion, origin },
        trx,
      );
      await namespaceKeys.markOthersRetiring(ns.id, version, trx);
      await namespaces.update(ns.id, { current_kek_version: version, updated_at: new Date() }, trx);
      // The DEKs and the KMS's named-key versions (kms/named-keys), both wrapped by the KEK: retiring the
      // old version while either still references it would label a needed key as unused.
      const total = (await secrets.countDeksToRewrap(ns.id, version, trx)) + (await this.repos.kmsKeys.countUnderOtherKek(ns.id, version, trx));
      await rewrapJobs.restart(ns.id, version, total, new Date(), trx);
      if (total === 0) await namespaceKeys.retireUnreferenced(ns.id, version, trx);
      return { id: ns.id, version, created_at: inserted.created_at, total };
    };
    const done = executor ? await run(executor) : await this.db.transaction().execute(run);
    if (!executor) this.onKekRotated(done.id);
    return { namespace: name, version: done.version, origin, created_at: iso(done.created_at), deks_to_rewrap: done.total };
  }

  async create(name: string, description = '', rotationPeriodSeconds: number | null = null): Promise<NamespaceDetail> {
    checkNamespaceName(name);
    const id = randomUUID();
    const wrappedKek = await this.keyring.generateWrappedKek(id, 1);
    try {
      await this.db.transaction().execute(async (trx) => {
        await this.repos.namespaces.insert({ id, name, description, current_kek_version: 1, rotation_period_seconds: rotationPeriodSeconds }, trx);
        await this.repos.namespaceKeys.insertActive(
          { namespace_id: id, version: 1, wrapped_key: wrappedKek, root_version: this.keyring.rootVersion, origin: 'generated' },
          trx,
        );
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('already_exists', `namespace "${name}" already exists`);
      throw err;
    }
    return this.get(name);
  }

  /** The namespaces `mayList` lets the caller see, a full page at a time. */
  async list(page: PageRequest, mayList: (name: string) => boolean): Promise<NamespacePage> {
    const fetch = (after: string, n: number) => this.repos.namespaces.page(after, n);
    const rows = await collectVisible(fetch, page.after, page.limit + 1, (r) => r.name, (r) => mayList(r.name));
    const { items, next_cursor } = takePage(rows, page.limit, (r) => r.name);
    return { namespaces: items.map(summary), next_cursor };
  }

  /** Changes a namespace's description and/or KEK rotation period (null = manual rotation only). */
  async update(name: string, changes: { description?: string; rotationPeriodSeconds?: number | null }): Promise<NamespaceDetail> {
    const ns = await this.resolve(name);
    const set: { updated_at: Date; description?: string; rotation_period_seconds?: number | null } = { updated_at: new Date() };
    if (changes.description !== undefined) set.description = changes.description;
    if (changes.rotationPeriodSeconds !== undefined) set.rotation_period_seconds = changes.rotationPeriodSeconds;
    await this.repos.namespaces.update(ns.id, set);
    return this.get(name);
  }

  async get(name: string): Promise<NamespaceDetail> {
    const ns = await this.resolve(name, undefined, { allowDisabled: true });
    const [row, keys, count] = await Promise.all([
      this.repos.namespaces.getById(ns.id),
      this.repos.namespaceKeys.listVersions(ns.id),
      this.repos.secrets.countInNamespace(ns.id),
    ]);
    return {
      ...summary(row),
      rotation_period: row.rotation_period_seconds,
      deletion_date: row.deletion_date ? iso(row.deletion_date) : null,
      secret_count: count,
      kek: {
        current_version: row.current_kek_version,
        versions: keys.map((k) => ({ version: k.version, origin: k.origin, state: k.state, created_at: iso(k.created_at) })),
      },
    };
  }

  /**
   * Deletes a namespace with its KEK versions, which makes every secret in it
   * unrecoverable. Refused while it holds secrets unless `force`.
   */
  async delete(name: string, force: boolean): Promise<{ secrets_deleted: number }> {
    checkNamespaceName(name);
    const event = changeEvents.namespace(name);
    const result = await this.db.transaction().execute(async (trx) => {
      const ns = await this.repos.namespaces.lockIdByName(name, trx);
      if (!ns) throw notFound(`namespace "${name}" not found`);
      const secrets = await this.repos.secrets.countInNamespace(ns.id, trx);
      if (secrets > 0 && !force) {
        throw conflict('conflict', `namespace "${name}" holds ${secrets} secret(s); delete them first or pass force=true`);
      }
      // Key objects in an HSM (HSM-resident named keys) first: the rows are all that names them.
      await this.beforeDelete(ns.id, trx);
      // Keys first, explicitly: the cascade would do it, but the order states the intent.
      await this.repos.namespaceKeys.deleteAll(ns.id, trx);
      await this.repos.namespaces.delete(ns.id, trx);
      await publishChange(this.changes, trx, event);
      return { id: ns.id, secrets };
    });
    applyLocally(this.changes, event);
    this.keyring.evictNamespace(result.id);
    return { secrets_deleted: result.secrets };
  }

  /**
   * Looks a namespace up by name; 404 when it does not exist, 409
   * namespace_disabled while it is scheduled for shredding (unless allowed).
   */
  async resolve(
    name: string,
    executor?: Executor,
    options: { allowDisabled?: boolean } = {},
  ): Promise<NamespaceRef> {
    checkNamespaceName(name);
    const row = await this.repos.namespaces.findByName(name, executor);
    if (!row) throw notFound(`namespace "${name}" not found`);
    if (row.deletion_date && !options.allowDisabled) throw namespaceDisabled(name, row.deletion_date);
    return { id: row.id, name, currentKekVersion: row.current_kek_version };
  }
}

function summary(row: { name: string; description: string; created_at: Date; updated_at: Date }): NamespaceSummary {
  return { name: row.name, description: row.description, created_at: iso(row.created_at), updated_at: iso(row.updated_at) };
}

// Kept for kms/kek-lifecycle.ts until it takes the repos itself.

/** DEKs of a namespace (not destroyed) wrapped under any version other than `target`. */
export async function countDeksToRewrap(executor: Executor, namespaceId: string, target: number): Promise<number> {
  return secretsRepo(executor).countDeksToRewrap(namespaceId, target);
}

/** Marks every older, still-keyed version 'retired': no DEK references it any more. */
export async function retireUnreferenced(trx: Transaction<Database>, namespaceId: string, current: number): Promise<void> {
  await namespaceKeysRepo(trx).retireUnreferenced(namespaceId, current);
}
