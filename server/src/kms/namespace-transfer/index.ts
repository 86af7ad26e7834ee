/**
 * Portable namespace export and import (issue 15): a namespace's secrets and
 * exportable named keys, sealed for one other Coffer server's import key
 * (bundle.ts; format in @coffer/sdk/api namespace-transfer.ts).
 *
 * What moves:
 *  - every secret with every RETAINED version, version numbers, metadata,
 *    soft-delete and destroy marks and times kept (a destroyed version keeps
 *    its place without data). Vault and Infisical users address versions by
 *    number (`?version=3`, rollbacks, references): after a move they must mean
 *    the same values, and history must not silently shrink to the latest.
 *    Secrets are the tenant's data: they always move.
 *  - named keys marked exportable, with every stored version and their ids
 *    (a ciphertext names its key by id), so what was encrypted on the source
 *    decrypts on the target. A key that is not exportable (or export_locked)
 *    never leaves: it is listed in the header as skipped, and data encrypted
 *    under it must be re-encrypted under an exportable key before a move.
 *  - the namespace's description and rotation period. Not its KEKs: the target
 *    re-encrypts everything under its own namespace KEK. Not policies, tokens
 *    or identities: they are server-wide, not the namespace's.
 *
 * The import goes into an existing, empty namespace of the target (the one
 * whose import key the bundle was made for), in one transaction: all or nothing.
 */
import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type {
  NamespaceExportRecord,
  NamespaceExportKey,
  NamespaceExportSecret,
  NamespaceImportResult,
  KmsKeyType,
} from '@coffer/sdk/api';
import { SECRET_TYPES } from '@coffer/sdk/api';
import { zeroize } from '../../crypto/aead.js';
import { aad } from '../../crypto/context.js';
import { changeEvents } from '../../cluster/events.js';
import { badRequest, CofferError, conflict, namespaceDisabled, notFound } from '../../errors.js';
import type { Keyring } from '../../keyring/keyring.js';
import { applyLocally, publishChange, type Changes } from '../../secrets/changes.js';
import { checkSecretPath } from '../../secrets/names.js';
import type { NamespaceService } from '../../secrets/namespace-service.js';
import { isUniqueViolation } from '../../storage/errors.js';
import type { Transactor } from '../../storage/executor.js';
import type { Repos } from '../../storage/repos/index.js';
import type { ImportedSecret, ImportedSecretVersion } from '../../storage/repos/namespace-transfer.js';
import type { Database, KmsKeyTypeName } from '../../storage/schema.js';
import type { ByokService } from '../byok.js';
import { parseEscrowPublicKey } from '../escrow.js';
import { KEY_TYPES } from '../named-keys/key-types.js';
import type { KeyStore } from '../named-keys/key-store.js';
import { checkImportedMaterial } from '../named-keys/transfer.js';
import { BundleWriter, invalidBundle, openRecords, parseBundle } from './bundle.js';

const PAGE = 200;
/** Rows per insert statement (well under PostgreSQL's 65535 parameters at 11 columns). */
const FLUSH_ROWS = 500;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface TransferCounts {
  secrets: number;
  versions: number;
  keys: number;
  skipped_keys: number;
}

export interface NamespaceTransferDeps {
  db: Transactor;
  repos: Pick<Repos, 'namespaceTransfer' | 'namespaces' | 'namespaceKeys' | 'kmsKeys'>;
  namespaces: Pick<NamespaceService, 'resolve'>;
  keyring: Pick<Keyring, 'decryptValues' | 'encryptValue' | 'wrapUnderKek'>;
  keyStore: Pick<KeyStore, 'open'>;
  byok: Pick<ByokService, 'unwrapTransferKey'>;
  changes: Changes;
}

export class NamespaceTransfer {
  constructor(private readonly deps: NamespaceTransferDeps) {}

  /** The whole bundle as lines (each ending in "\n") and what it holds. */
  async export(namespace: string, publicKeyPem: string): Promise<{ lines: string[]; counts: TransferCounts }> {
    const target = parseEscrowPublicKey(publicKeyPem);
    const ns = await this.deps.namespaces.resolve(namespace);
    const repo = this.deps.repos.namespaceTransfer;
    const row = await this.deps.repos.namespaces.getById(ns.id);
    const keys = await repo.keys(ns.id);
    const skipped = keys
      .filter((k) => !k.exportable || k.export_locked || k.hsm)
      .map((k) => ({ name: k.name, reason: k.hsm ? 'HSM-resident' : k.export_locked ? 'export_locked' : 'not exportable' }));
    const writer = new BundleWriter({ namespace, skipped_keys: skipped }, target);
    const counts: TransferCounts = { secrets: 0, versions: 0, keys: 0, skipped_keys: skipped.length };
    try {
      const lines = [`${writer.headerLine}\n`];
      lines.push(writer.seal({ kind: 'namespace', description: row.description, rotation_period: row.rotation_period_seconds }));
      for (let after = ''; ; ) {
        const secrets = await repo.secretsPage(ns.id, after, PAGE);
        if (secrets.length === 0) break;
        after = secrets.at(-1)!.path;
        const versions = await repo.versionsOf(secrets.map((s) => s.id));
        const data = new Map<string, Record<string, string>>();
        const live = versions.filter((v) => v.wrapped_dek && v.ciphertext && v.kek_version !== null);
        await this.deps.keyring.decryptValues(
          ns.id,
          live.map((v) => ({ secretId: v.secret_id, version: v.version, kekVersion: v.kek_version!, wrappedDek: v.wrapped_dek!, ciphertext: v.ciphertext! })),
          (plaintext, i) => data.set(`${live[i]!.secret_id}:${live[i]!.version}`, JSON.parse(decoder.decode(plaintext)) as Record<string, string>),
        );
        for (const secret of secrets) {
          const own = versions.filter((v) => v.secret_id === secret.id);
          const record: NamespaceExportSecret = {
            kind: 'secret',
            path: secret.path,
            current_version: secret.current_version,
            max_versions: secret.max_versions,
            created_at: secret.created_at.toISOString(),
            updated_at: secret.updated_at.toISOString(),
            versions: own.map((v) => ({
              version: v.version,
              type: v.type,
              metadata: v.metadata,
              data: data.get(`${v.secret_id}:${v.version}`) ?? null,
              created_at: v.created_at.toISOString(),
              deleted_at: v.deleted_at?.toISOString() ?? null,
              destroyed_at: v.destroyed_at?.toISOString() ?? null,
            })),
          };
          lines.push(writer.seal(record));
          counts.secrets++;
          counts.versions += own.length;
        }
      }
      for (const key of keys) {
        if (skipped.some((s) => s.name === key.name)) continue;
        const stored = await this.deps.repos.kmsKeys.listVersions(key.id);
        const versions: NamespaceExportKey['versions'] = [];
        for (const v of stored) {
          const material = await this.deps.keyStore.open(key, v);
          try {
            versions.push({ version: v.version, material: Buffer.from(material).toString('base64'), created_at: v.created_at.toISOString() });
          } finally {
            zeroize(material);
          }
        }
        lines.push(
          writer.seal({
            kind: 'key',
            id: key.id,
            name: key.name,
            type: key.type,
            origin: key.origin,
            latest_version: key.latest_version,
            min_decryption_version: key.min_decryption_version,
            min_encryption_version: key.min_encryption_version,
            deletion_allowed: key.deletion_allowed,
            auto_rotate_period: key.auto_rotate_period_seconds,
            versions,
          }),
        );
        counts.keys++;
      }
      lines.push(writer.seal({ kind: 'end', records: writer.records + 1, secrets: counts.secrets, versions: counts.versions, keys: counts.keys }));
      return { lines, counts };
    } finally {
      writer.destroy();
    }
  }

  /**
   * Imports a bundle into `namespace` (existing and empty), re-encrypting
   * everything under its current KEK. The import key named in the bundle is
   * spent by the attempt, whatever its outcome.
   */
  async import(namespace: string, text: string): Promise<{ result: NamespaceImportResult; counts: TransferCounts }> {
    const bundle = parseBundle(text);
    const ns = await this.deps.namespaces.resolve(namespace);
    // Refused before the import key is spent: a non-empty namespace is the caller's mistake, not an attack.
    if (!(await this.deps.repos.namespaceTransfer.isEmpty(ns.id))) throw nonEmpty(namespace);
    let transferKey;
    try {
      transferKey = await this.deps.byok.unwrapTransferKey(namespace, bundle.header.target_key_sha256, bundle.header.wrapped_transfer_key);
    } catch (err) {
      if (err instanceof CofferError && err.code === 'invalid_key_material') throw invalidBundle('the bundle\'s transfer key does not unwrap with this namespace\'s import key: the bundle was altered');
      throw err;
    }
    const records = openRecords(bundle, transferKey);
    checkUnique(records);
    const counts: TransferCounts = { secrets: 0, versions: 0, keys: 0, skipped_keys: bundle.header.skipped_keys.length };
    const event = changeEvents.namespace(namespace);
    try {
      await this.deps.db.transaction().execute(async (trx) => {
        const locked = await this.deps.repos.namespaceTransfer.lockForImport(namespace, trx);
        if (!locked) throw notFound(`namespace "${namespace}" not found`);
        if (locked.deletion_date) throw namespaceDisabled(namespace, locked.deletion_date);
        if (!(await this.deps.repos.namespaceTransfer.isEmpty(locked.id, trx))) throw nonEmpty(namespace);
        const target = { id: locked.id, kekVersion: locked.current_kek_version };
        let encryptions = 0;
        // Rows go in a few statements, not two per secret: one PGlite round trip costs milliseconds.
        const pending: { secrets: ImportedSecret[]; versions: ImportedSecretVersion[] } = { secrets: [], versions: [] };
        const flush = async () => {
          await this.deps.repos.namespaceTransfer.insertSecrets(pending.secrets, pending.versions, trx);
          pending.secrets = [];
          pending.versions = [];
        };
        for (const record of records) {
          if (record.kind === 'namespace') {
            await this.deps.repos.namespaces.update(locked.id, { description: String(record.description ?? ''), rotation_period_seconds: record.rotation_period ?? null, updated_at: new Date() }, trx);
          } else if (record.kind === 'secret') {
            const prepared = await this.prepareSecret(target, record, trx);
            pending.secrets.push(prepared.secret);
            pending.versions.push(...prepared.versions);
            if (pending.secrets.length >= FLUSH_ROWS || pending.versions.length >= FLUSH_ROWS) await flush();
            encryptions += prepared.encryptions;
            counts.secrets++;
            counts.versions += record.versions.length;
          } else if (record.kind === 'key') {
            await this.importKey(target, record, trx);
            counts.keys++;
          } else if (record.kind !== 'end') {
            throw invalidBundle(`the bundle holds a record of an unknown kind: import it with a newer Coffer`);
          }
        }
        await flush();
        if (encryptions > 0) await this.deps.repos.namespaceKeys.addEncryptions(target.id, target.kekVersion, encryptions, trx);
        await publishChange(this.deps.changes, trx, event);
      });
    } finally {
      applyLocally(this.deps.changes, event);
    }
    return {
      result: { namespace, source_namespace: bundle.header.namespace, secrets: counts.secrets, versions: counts.versions, keys: counts.keys, skipped_keys: bundle.header.skipped_keys },
      counts,
    };
  }

  /** A secret's rows, its values encrypted under the namespace's KEK, and how many it encrypted. */
  private async prepareSecret(
    ns: { id: string; kekVersion: number },
    record: NamespaceExportSecret,
    trx: Trx,
  ): Promise<{ secret: ImportedSecret; versions: ImportedSecretVersion[]; encryptions: number }> {
    checkSecretPath(record.path);
    const secretId = randomUUID();
    const rows: ImportedSecretVersion[] = [];
    let encryptions = 0;
    for (const v of record.versions) {
      if (!Number.isInteger(v.version) || v.version < 1 || v.version > record.current_version) throw invalidBundle(`secret "${record.path}" has an impossible version`);
      if (!(SECRET_TYPES as readonly string[]).includes(v.type)) throw badRequest(`secret "${record.path}" version ${v.version} has type "${v.type}", which this server does not know`);
      const base = {
        secret_id: secretId,
        version: v.version,
        type: v.type,
        metadata: JSON.stringify(v.metadata ?? {}),
        created_at: new Date(v.created_at),
        deleted_at: v.deleted_at ? new Date(v.deleted_at) : null,
        destroyed_at: v.destroyed_at ? new Date(v.destroyed_at) : null,
      };
      if (v.data === null) {
        if (!v.destroyed_at) throw invalidBundle(`secret "${record.path}" version ${v.version} has no value but is not destroyed`);
        rows.push({ ...base, kek_version: null, wrapped_dek: null, ciphertext: null });
        continue;
      }
      const plaintext = encoder.encode(JSON.stringify(v.data));
      try {
        const encrypted = await this.deps.keyring.encryptValue({ namespaceId: ns.id, secretId, version: v.version }, ns.kekVersion, plaintext, trx);
        rows.push({ ...base, kek_version: encrypted.kekVersion, wrapped_dek: encrypted.wrappedDek, ciphertext: encrypted.ciphertext });
        encryptions++;
      } finally {
        plaintext.fill(0);
      }
    }
    const secret = {
      id: secretId,
      namespace_id: ns.id,
      path: record.path,
      current_version: record.current_version,
      max_versions: record.max_versions,
      created_at: new Date(record.created_at),
      updated_at: new Date(record.updated_at),
    };
    return { secret, versions: rows, encryptions };
  }

  private async importKey(ns: { id: string; kekVersion: number }, record: NamespaceExportKey, trx: Trx): Promise<void> {
    const type = record.type as KmsKeyType;
    if (!KEY_TYPES[type]) throw badRequest(`key "${record.name}" has type "${record.type}", which this server does not know`);
    const wrapped: Array<{ version: number; kek_version: number; wrapped_material: Uint8Array; created_at: Date }> = [];
    for (const v of record.versions) {
      const material = checkImportedMaterial(type, new Uint8Array(Buffer.from(v.material, 'base64')));
      try {
        const context = aad.kmsKey(ns.id, record.id, record.name, type, v.version, ns.kekVersion);
        wrapped.push({ version: v.version, kek_version: ns.kekVersion, wrapped_material: await this.deps.keyring.wrapUnderKek(ns.id, ns.kekVersion, material, context, trx), created_at: new Date(v.created_at) });
      } finally {
        zeroize(material);
      }
    }
    try {
      await this.deps.repos.namespaceTransfer.insertKey(
        {
          id: record.id,
          namespace_id: ns.id,
          name: record.name,
          type: type as KmsKeyTypeName,
          latest_version: record.latest_version,
          min_decryption_version: record.min_decryption_version,
          min_encryption_version: record.min_encryption_version,
          exportable: true,
          export_locked: false,
          deletion_allowed: record.deletion_allowed === true,
          auto_rotate_period_seconds: record.auto_rotate_period ?? null,
          origin: record.origin === 'external' ? 'external' : 'internal',
          hsm: false,
        },
        wrapped,
        trx,
      );
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw conflict('already_exists', `key "${record.name}" (id ${record.id}) is on this server already, in another namespace: a bundle's keys can be imported once per server`);
      }
      throw err;
    }
  }
}

type Trx = Transaction<Database>;

/** Paths, key names and ids, and version numbers each appear once (else the inserts would clash midway). */
function checkUnique(records: readonly NamespaceExportRecord[]): void {
  const seen = new Set<string>();
  const once = (what: string) => {
    if (seen.has(what)) throw invalidBundle(`the bundle names ${what} twice`);
    seen.add(what);
  };
  for (const r of records) {
    if (r.kind === 'secret') {
      once(`secret ${r.path}`);
      for (const v of r.versions) once(`secret ${r.path} version ${v.version}`);
    } else if (r.kind === 'key') {
      once(`key ${r.name}`);
      once(`key id ${r.id}`);
      for (const v of r.versions) {
        once(`key ${r.name} version ${v.version}`);
        if (v.version > r.latest_version) throw invalidBundle(`key "${r.name}" has a version after its latest`);
      }
    }
  }
}

function nonEmpty(namespace: string): CofferError {
  return conflict('conflict', `namespace "${namespace}" is not empty: a namespace export is imported into a new or empty namespace`);
}
