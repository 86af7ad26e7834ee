/**
 * POST /v1/sys/restore: a backup (sdk/src/api/backup.ts) put back into an
 * UNINITIALISED server, in one transaction: every table is emptied and
 * refilled, or nothing changes.
 *
 * Before anything is written the restore PROVES the backup is the original
 * root key's: the trailer's sealed digest must open under that key and equal
 * the content's SHA-256 (a plain SHA-256 can be recomputed by anyone who edits
 * the file: planted policies, identities or audit rows would otherwise come
 * back). The root key comes from the ORIGINAL unseal shares sent with the
 * backup (Shamir, RestoreEnvelope) or from the HSM, by the label the backup
 * names (PKCS#11). Having proven it, the server unseals with it after the
 * commit: the shares were just shown, asking for them again proves nothing.
 *
 * Refused with a 4xx, changing nothing: a server already initialised (409), a
 * backup that is malformed, whose SHA-256 does not match, or whose sealed
 * digest does not open under the root key (400), missing or wrong shares
 * (400), a newer format or another schema (400), a backup of another seal type
 * than this server is configured with, or an HSM without its key (409).
 *
 * The upload arrives already spooled and checked (restore-spool.ts): in memory
 * only what the proofs need, the rows on disk, read again to insert.
 *
 * The audit chain comes back as it was and goes on from its head: the
 * restore's own entry is appended in the same transaction (like init's), so a
 * restored server's chain verifies end to end. Entries the uninitialised
 * server wrote before (status probes) are replaced with the backup's chain.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Transaction } from 'kysely';
import { BackupFormatError, byteaOf, parseBackup, type ParsedBackup, type RestoreResult } from '@coffer/sdk/api';
import { changeEvents, publishEvent } from '../cluster/events.js';
import { zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError, conflict } from '../errors.js';
import { clearTables, insertRows, isInitialised, schemaTables, schemaVersion } from '../storage/repos/backup.js';
import type { RootKey } from '../seal/root-key.js';
import type { Database } from '../storage/schema.js';
import { BACKUP_TABLES, sha256Hex } from './backup.js';
import { rootFromShares, rootRefOf } from './backup-shares.js';
import type { RestoreSpool } from './restore-spool.js';
import type { Vault } from './vault.js';

/** Rows per INSERT, and the most bytes of row JSON one INSERT carries. */
const INSERT_ROWS = 500;
const INSERT_BYTES = 8 * 1024 * 1024;

/**
 * Restores a spooled, checked upload (restore-spool.ts): the shares and the
 * sealed digest are proven from what the spool kept in memory, then every
 * table is emptied and the spool read again and inserted page by page, all in
 * one transaction. The spool is hashed again while it is read: bytes that
 * changed on disk since they were proven roll everything back.
 */
export function restore(vault: Vault, upload: RestoreSpool, beforeCommit?: (trx: Transaction<Database>) => Promise<void>): Promise<RestoreResult> {
  return vault.exclusive(async () => {
    const { shares, backup } = upload;
    const { header } = backup;
    await vault.load();
    if (vault.config) throw conflict('already_initialized', 'Coffer is already initialised: restore only into a new, uninitialised server');
    const sealType = vault.deps.seals.forInit.type;
    if (header.seal.type !== sealType) {
      throw new CofferError(
        'seal_mismatch',
        `the backup was made under the ${header.seal.type} seal and this server is configured for ${sealType}: configure the same seal (COFFER_SEAL${vault.deps.seals.of(header.seal.type).capabilities.storedKeys ? ' and the HSM holding the original root key' : ''})`,
      );
    }
    const extra = header.tables.filter((t) => !BACKUP_TABLES.includes(t));
    const missing = BACKUP_TABLES.filter((t) => !header.tables.includes(t));
    if (extra.length > 0 || missing.length > 0) {
      throw new CofferError('unsupported_backup', `the backup's tables differ from this server's (${[...extra, ...missing].join(', ')}): restore with the Coffer version that made it`);
    }
    const seal = backup.rows.get('seal_config') ?? [];
    if (seal.length !== 1) throw new CofferError('invalid_backup', 'the backup holds no seal configuration');
    const root = await rootOfBackup(vault, seal[0]!, shares);
    try {
      proveDigest(backup, await openDigest(root, backup));
      await vault.db.transaction().execute(async (trx) => {
        const schema = await schemaVersion(trx);
        if (header.schema !== schema) {
          throw new CofferError(
            'unsupported_backup',
            `the backup's schema (${header.schema}) is not this server's (${schema}): restore with the Coffer version that made it, then upgrade`,
          );
        }
        const live = await schemaTables(trx);
        const notInBackup = live.filter((t) => !header.tables.includes(t));
        if (notInBackup.length > 0) throw new Error(`tables not in the storage registry: ${notInBackup.join(', ')}`);
        // Checked again inside the transaction: another server sharing the database may have initialised meanwhile.
        if (await isInitialised(trx)) throw conflict('already_initialized', 'Coffer is already initialised: restore only into a new, uninitialised server');
        await clearTables(trx, header.tables);
        await insertSpooled(trx, upload);
        // Other servers sharing the database learn that it is initialised now (as after an init).
        await publishEvent(vault.deps.changes, trx, changeEvents.init());
        await beforeCommit?.(trx);
      });
    } catch (err) {
      root.destroy();
      throw err;
    }
    await vault.load();
    vault.sealError = null;
    vault.deps.onTransition?.('initialised', { restored_from_backup: header.created_at, seal_type: header.seal.type, root_version: header.seal.root_version });
    let sealed = true;
    try {
      // The services own the root key from here on.
      await vault.unsealWith(root);
      sealed = false;
    } catch (err) {
      // The restore is committed: the server stays sealed and unseals as usual.
      root.destroy();
      vault.sealError = err instanceof Error ? err.message : String(err);
    }
    return { restored: { ...upload.counts }, seal_type: header.seal.type, root_version: header.seal.root_version, sealed };
  });
}

/** The spool's rows into their (emptied) tables, in file order: parents first, as the header lists them. */
async function insertSpooled(trx: Transaction<Database>, upload: RestoreSpool): Promise<void> {
  const hash = createHash('sha256');
  let table: string | null = null;
  let page: string[] = [];
  let pageBytes = 0;
  const flush = async () => {
    if (table === null || page.length === 0) return;
    try {
      await insertRows(trx, table, page);
    } catch {
      // A row that does not fit the schema (an edited backup whose hash was recomputed).
      throw new CofferError('invalid_backup', 'the backup\'s rows do not fit the schema (edited or damaged)');
    }
    page = [];
    pageBytes = 0;
  };
  for await (const line of upload.lines()) {
    if (line.startsWith('{"end":')) break;
    hash.update(line, 'utf8').update('\n');
    if (line.startsWith('{"r":')) {
      page.push(line.slice(5, -1));
      pageBytes += line.length;
      if (page.length >= INSERT_ROWS || pageBytes >= INSERT_BYTES) await flush();
    } else if (!line.startsWith('{"coffer_backup"')) {
      await flush();
      table = (JSON.parse(line) as { table: string }).table;
    }
  }
  await flush();
  const same = timingSafeEqual(hash.digest(), Buffer.from(upload.backup.trailer.sha256, 'hex'));
  if (!same) throw new CofferError('integrity_error', 'the spooled backup changed on disk after it was checked: nothing was restored');
}

const forged = () =>
  new CofferError('invalid_backup', 'the backup\'s sealed digest does not open under the root key: edited, or made by another vault');

/** The trailer's sealed digest opened with `root`; 400 when it does not open. */
async function openDigest(root: RootKey, backup: ParsedBackup): Promise<Uint8Array> {
  try {
    return await root.unwrapKey(Buffer.from(backup.trailer.digest_seal, 'base64'), aad.backupDigest(backup.header.created_at, backup.header.seal.root_version), 'the backup digest');
  } catch {
    throw forged();
  }
}

/** The opened digest must be the content's (parseBackup checked the trailer's sha256 against the content). */
function proveDigest(backup: ParsedBackup, opened: Uint8Array): void {
  const computed = Buffer.from(backup.trailer.sha256, 'hex');
  const same = opened.length === computed.length && computed.length === 32 && timingSafeEqual(opened, computed);
  zeroize(opened);
  if (!same) throw forged();
}

/**
 * The backup's root key, checked against its root check value before anything is written:
 * from the HSM (a seal that stores its root key), else rebuilt from the original shares.
 */
async function rootOfBackup(vault: Vault, sealRow: string, shares: string[] | null): Promise<RootKey> {
  if (!vault.deps.seals.forInit.capabilities.storedKeys) return rootFromShares(sealRow, shares);
  if (shares) throw new CofferError('invalid_request', 'this seal holds the root key in its HSM: a restore takes no shares');
  const { row, rootCheck, rootVersion } = rootRefOf(sealRow);
  return proveSealHoldsRoot(vault, row, rootCheck, rootVersion);
}

/**
 * A seal that stores its root key (PKCS#11) must hold the backup's: found by
 * the label the backup names and checked against its check value.
 */
async function proveSealHoldsRoot(vault: Vault, row: Record<string, unknown>, rootCheck: Uint8Array, rootVersion: number): Promise<RootKey> {
  const seal = vault.deps.seals.forInit;
  const label = typeof row.hsm_key_label === 'string' ? row.hsm_key_label : null;
  const mismatch = () =>
    new CofferError('seal_mismatch', `the HSM does not hold the backup's root key (label ${label ?? '(none)'}): configure the token that holds it`);
  // A device that cannot be reached stays a 503 (try again); a reachable one without the key is a 409.
  const device = seal.importDevice();
  if (device && label !== null && (await device.token.findAesKey(label)) === null) throw mismatch();
  let root: RootKey;
  try {
    root = await seal.unsealRoot({ rootVersion, rootCheck, hsmKeyLabel: label, rootChain: byteaOf(row.root_chain) });
  } catch (err) {
    // The key object is there (or the seal has no device to ask): one that fails the root check is another key.
    if (device && label !== null) throw mismatch();
    throw err;
  }
  return root;
}
