/**
 * GET /v1/sys/backup: everything Coffer stores, as it is stored (keys wrapped
 * by the root key or a KEK, values encrypted), read in ONE repeatable-read
 * transaction so the backup is a consistent snapshot while the server keeps
 * serving. The format is sdk/src/api/backup.ts. The list of tables is the
 * registry's (storage/wrapped-tables.ts TABLES); a table in the schema that the
 * registry does not know fails the backup instead of being silently left out.
 *
 * PostgreSQL: rows are streamed to the client as they are read (the snapshot
 * holds them still). PGlite has one connection that every request shares, so
 * the snapshot is read into memory first and sent after the transaction ends:
 * a slow client must not hold the whole server.
 *
 * POST /v1/sys/backup/verify: proves that every wrapped key of an uploaded
 * backup opens under this server's root key, that the secret values decrypt,
 * and that the sealed digest is the root key's. It answers counts, never keys.
 * The upload is spooled to disk like a restore's (restore-spool.ts) and its
 * value tables read back from there, so no backup is held in memory.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import {
  BACKUP_FORMAT,
  byteaOf,
  fingerprintsOf,
  type BackupHeader,
  type BackupTrailer,
  type BackupVerifyResult,
  type ParsedBackup,
  type Sha256Hex,
} from '@coffer/sdk/api';
import { openWithKey, zeroize, type KeyMaterial } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError } from '../errors.js';
import { ROOT_WRAPPED_AAD } from '../seal/rewrap.js';
import type { RootKey } from '../seal/root-key.js';
import { ROOT_CHECK_PLAINTEXT } from '../seal/seal-context.js';
import { dumpTable, insertOrder, schemaTables, schemaVersion } from '../storage/repos/backup.js';
import { sealConfigRepo } from '../storage/repos/seal-config.js';
import type { Database } from '../storage/schema.js';
import { ROOT_WRAPPED, TABLES } from '../storage/wrapped-tables.js';

/** SHA-256 for the backup format's checks (the wire contract imports no crypto of its own). */
export const sha256Hex: Sha256Hex = (...parts) => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
};

/** The tables a backup holds: the registry's, which the schema must not exceed. */
export const BACKUP_TABLES: readonly string[] = Object.keys(TABLES);

export interface BackupProgress {
  table: string;
  rows: number;
}

/**
 * Writes a backup through `write` (called in order; awaited, so a slow reader
 * slows the dump instead of filling memory). `stream` false: read everything
 * inside the transaction, write after it (PGlite).
 */
export async function writeBackup(
  db: Kysely<Database>,
  root: RootKey,
  write: (chunk: string) => Promise<void>,
  options: { stream: boolean; now?: Date },
): Promise<{ header: BackupHeader; trailer: BackupTrailer }> {
  const hash = createHash('sha256');
  const held: string[] = [];
  const emit = async (chunk: string) => {
    hash.update(chunk, 'utf8');
    if (options.stream) await write(chunk);
    else held.push(chunk);
  };
  const kept = new Map<string, string[]>();
  const keep = new Set(['seal_config', ...ROOT_WRAPPED.map((e) => e.table)]);
  const counts: Record<string, number> = {};
  const header = await db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (trx) => {
      const unknown = (await schemaTables(trx)).filter((t) => !BACKUP_TABLES.includes(t));
      if (unknown.length > 0) throw new Error(`tables not in the storage registry (wrapped-tables.ts), refusing an incomplete backup: ${unknown.join(', ')}`);
      const seal = await sealConfigRepo(db).find(trx);
      if (!seal) throw new CofferError('not_initialized', 'Coffer is not initialised: nothing to back up');
      const header: BackupHeader = {
        format: BACKUP_FORMAT,
        created_at: (options.now ?? new Date()).toISOString(),
        schema: await schemaVersion(trx),
        seal: { type: seal.sealType, root_version: seal.rootVersion, shares: seal.shares, threshold: seal.threshold, hsm_key_label: seal.hsmKeyLabel },
        tables: await insertOrder(trx, BACKUP_TABLES),
        root_wrapped: ROOT_WRAPPED.map((e) => ({ table: e.table, key: [...e.key], column: e.column })),
      };
      await emit(`${JSON.stringify({ coffer_backup: header })}\n`);
      for (const table of header.tables) {
        await emit(`${JSON.stringify({ table })}\n`);
        counts[table] = await dumpTable(trx, table, async (rows) => {
          if (keep.has(table)) kept.set(table, [...(kept.get(table) ?? []), ...rows]);
          await emit(rows.map((r) => `{"r":${r}}\n`).join(''));
        });
      }
      return header;
    });
  const digest = hash.digest();
  const sealed = await root.wrapKey(new Uint8Array(digest), aad.backupDigest(header.created_at, root.version));
  const trailer: BackupTrailer = {
    counts,
    fingerprints: fingerprintsOf(header, kept, sha256Hex),
    sha256: digest.toString('hex'),
    digest_seal: Buffer.from(sealed).toString('base64'),
  };
  for (const chunk of held) await write(chunk);
  await write(`${JSON.stringify({ end: trailer })}\n`);
  return { header, trailer };
}

type Row = Record<string, unknown>;
const rowsOf = (b: ParsedBackup, table: string): Row[] => (b.rows.get(table) ?? []).map((t) => JSON.parse(t) as Row);
const MAX_FAILURES = 20;

/**
 * The rows of a table that ParsedBackup may not hold (a streaming reader keeps only the
 * fingerprinted tables): read again from where the backup lies, a spool or a file, one pass each.
 */
export type BackupRowSource = (table: string) => AsyncIterable<Row>;

/** A backup parsed whole (parseBackup): every table is in memory. */
export const memoryRows =
  (backup: ParsedBackup): BackupRowSource =>
  async function* (table) {
    yield* rowsOf(backup, table);
  };

/**
 * Opens every wrapped key of `backup` with `root` (the live root key, or one
 * rebuilt from shares): the root check, the root-wrapped rows, each DEK and
 * named key version under the backup's own KEKs, and each secret value under
 * its DEK. Every opened key is zeroed at once; only counts leave.
 */
export async function verifyKeysOpen(backup: ParsedBackup, root: RootKey, rows: BackupRowSource = memoryRows(backup)): Promise<BackupVerifyResult> {
  const failures: string[] = [];
  const fail = (what: string) => {
    if (failures.length < MAX_FAILURES) failures.push(what);
  };
  const result: BackupVerifyResult = {
    ok: false,
    root_check: false,
    digest: false,
    root_wrapped: { opened: 0, failed: 0 },
    kek_wrapped: { opened: 0, failed: 0 },
    values: { opened: 0, failed: 0 },
    failures,
  };
  const attempt = async (what: string, fn: () => Promise<void>, count: { opened: number; failed: number } | null) => {
    try {
      await fn();
      if (count) count.opened += 1;
      return true;
    } catch {
      if (count) count.failed += 1;
      fail(what);
      return false;
    }
  };
  const seal = rowsOf(backup, 'seal_config')[0];
  const check = seal ? byteaOf(seal.root_check) : null;
  result.root_check = await attempt('seal_config root_check', async () => {
    if (!check || !seal) throw new Error('no root check');
    const opened = await root.unwrapKey(check, aad.rootCheck(Number(seal.root_version)), 'the root check value');
    const same = Buffer.from(opened).equals(Buffer.from(ROOT_CHECK_PLAINTEXT));
    zeroize(opened);
    if (!same) throw new Error('root check mismatch');
  }, null);
  result.digest = await attempt('digest_seal', async () => {
    const opened = await root.unwrapKey(Buffer.from(backup.trailer.digest_seal, 'base64'), aad.backupDigest(backup.header.created_at, backup.header.seal.root_version), 'the backup digest');
    const expected = Buffer.from(backup.trailer.sha256, 'hex');
    const same = opened.length === expected.length && timingSafeEqual(opened, expected);
    zeroize(opened);
    if (!same) throw new Error('digest mismatch');
  }, null);

  const keks = new Map<string, KeyMaterial>();
  try {
    for (const entry of ROOT_WRAPPED) {
      const context = ROOT_WRAPPED_AAD[entry.table];
      for (const row of rowsOf(backup, entry.table)) {
        const wrapped = byteaOf(row[entry.column]);
        if (!wrapped || (entry.onlyWhileNull && row[entry.onlyWhileNull] !== null)) continue;
        const values = Object.fromEntries([...entry.key, ...entry.aad.fields].map((f) => [f, row[f] as string | number]));
        const name = [entry.table, ...entry.key.map((k) => String(row[k]))].join('/');
        await attempt(name, async () => {
          const key = await root.unwrapKey(wrapped, context.aad(values, Number(row[entry.rootVersion])), context.what(values));
          if (entry.table === 'namespace_keys') keks.set(`${String(row.namespace_id)}:${Number(row.version)}`, key);
          else zeroize(key);
        }, result.root_wrapped);
      }
    }
    // Ids only: the values stay where they are until their pass.
    const namespaceOf = new Map<string, string>();
    for await (const s of rows('secrets')) namespaceOf.set(String(s.id), String(s.namespace_id));
    for await (const row of rows('secret_versions')) {
      const wrapped = byteaOf(row.wrapped_dek);
      const ciphertext = byteaOf(row.ciphertext);
      if (!wrapped || !ciphertext) continue;
      const ns = namespaceOf.get(String(row.secret_id)) ?? '';
      const secret = String(row.secret_id);
      const version = Number(row.version);
      const kekVersion = Number(row.kek_version);
      const name = `secret_versions/${secret}/${version}`;
      let dek: KeyMaterial | null = null;
      const opened = await attempt(name, async () => {
        const kek = keks.get(`${ns}:${kekVersion}`);
        if (!kek) throw new Error('KEK missing');
        dek = openWithKey(kek, wrapped, aad.dek(ns, secret, version, kekVersion), 'a secret version');
      }, result.kek_wrapped);
      if (!opened || !dek) continue;
      const key: KeyMaterial = dek;
      await attempt(`${name} value`, async () => zeroize(openWithKey(key, ciphertext, aad.secretValue(ns, secret, version), 'a secret value')), result.values);
      zeroize(key);
    }
    const kmsKeys = new Map<string, Row>();
    for await (const k of rows('kms_keys')) kmsKeys.set(String(k.id), k);
    for await (const row of rows('kms_key_versions')) {
      const wrapped = byteaOf(row.wrapped_material);
      if (!wrapped) continue;
      const keyId = String(row.key_id);
      const meta = kmsKeys.get(keyId);
      const ns = String(row.namespace_id);
      const kekVersion = Number(row.kek_version);
      await attempt(`kms_key_versions/${keyId}/${String(row.version)}`, async () => {
        const kek = keks.get(`${ns}:${kekVersion}`);
        if (!kek || !meta) throw new Error('KEK or key missing');
        zeroize(openWithKey(kek, wrapped, aad.kmsKey(ns, keyId, String(meta.name), String(meta.type), Number(row.version), kekVersion), 'a named key'));
      }, result.kek_wrapped);
    }
  } finally {
    for (const k of keks.values()) zeroize(k);
  }
  result.ok = result.root_check && result.digest && result.root_wrapped.failed === 0 && result.kek_wrapped.failed === 0 && result.values.failed === 0;
  return result;
}
