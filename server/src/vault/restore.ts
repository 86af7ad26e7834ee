/**
 * POST /v1/sys/restore: a backup (sdk/src/api/backup.ts) put back into an
 * UNINITIALISED server, in one transaction: every table is emptied and
 * refilled, or nothing changes. The server is then initialised and sealed:
 * it unseals with the original shares (Shamir) or the original HSM key
 * (PKCS#11, found by the label the backup names), and with nothing else,
 * because every key in the backup is still wrapped by the original root key.
 *
 * Refused with a 4xx, changing nothing: a server already initialised (409), a
 * backup that is malformed or whose SHA-256 does not match (400), a newer
 * format or another schema (400), a backup of another seal type than this
 * server is configured with (409).
 *
 * The audit chain comes back as it was and goes on from its head: the
 * restore's own entry is appended in the same transaction (like init's), so a
 * restored server's chain verifies end to end. Entries the uninitialised
 * server wrote before (status probes) are replaced with the backup's chain.
 */
import type { Transaction } from 'kysely';
import { BackupFormatError, byteaOf, parseBackup, type ParsedBackup, type RestoreResult } from '@coffer/sdk/api';
import { changeEvents, publishEvent } from '../cluster/events.js';
import { CofferError, conflict } from '../errors.js';
import { isInitialised, replaceAll, schemaTables, schemaVersion } from '../storage/repos/backup.js';
import type { RootKey } from '../seal/root-key.js';
import type { Database } from '../storage/schema.js';
import { BACKUP_TABLES, sha256Hex } from './backup.js';
import type { Vault } from './vault.js';

/** A parsed, hash-checked backup, or 400 naming the problem. */
export function readBackup(text: string): ParsedBackup {
  try {
    return parseBackup(text, sha256Hex);
  } catch (err) {
    if (err instanceof BackupFormatError) throw new CofferError(err.unsupported ? 'unsupported_backup' : 'invalid_backup', err.message);
    throw err;
  }
}

export function restore(vault: Vault, text: string, beforeCommit?: (trx: Transaction<Database>) => Promise<void>): Promise<RestoreResult> {
  return vault.exclusive(async () => {
    const backup = readBackup(text);
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
    await proveSealHoldsRoot(vault, seal[0]!);
    const restored = await vault.db.transaction().execute(async (trx) => {
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
      try {
        await replaceAll(trx, header.tables, backup.rows);
      } catch (err) {
        // A row that does not fit the schema (an edited backup whose hash was recomputed).
        throw new CofferError('invalid_backup', 'the backup\'s rows do not fit the schema (edited or damaged)');
      }
      // Other servers sharing the database learn that it is initialised now (as after an init).
      await publishEvent(vault.deps.changes, trx, changeEvents.init());
      await beforeCommit?.(trx);
      return Object.fromEntries(header.tables.map((t) => [t, backup.rows.get(t)!.length]));
    });
    await vault.load();
    vault.sealError = null;
    vault.deps.onTransition?.('initialised', { restored_from_backup: header.created_at, seal_type: header.seal.type, root_version: header.seal.root_version });
    return { restored, seal_type: header.seal.type, root_version: header.seal.root_version, sealed: true };
  });
}

/**
 * A seal that stores its root key (PKCS#11) must hold the backup's: found by
 * the label the backup names and checked against its check value before
 * anything is written. (A Shamir backup's root key is in the operators' shares,
 * checked at unseal.)
 */
async function proveSealHoldsRoot(vault: Vault, sealRow: string): Promise<void> {
  const seal = vault.deps.seals.forInit;
  if (!seal.capabilities.storedKeys) return;
  const row = JSON.parse(sealRow) as Record<string, unknown>;
  const rootCheck = byteaOf(row.root_check);
  if (!rootCheck) throw new CofferError('invalid_backup', 'the backup\'s seal configuration has no root check value');
  const label = typeof row.hsm_key_label === 'string' ? row.hsm_key_label : null;
  const mismatch = () =>
    new CofferError('seal_mismatch', `the HSM does not hold the backup's root key (label ${label ?? '(none)'}): configure the token that holds it`);
  // A device that cannot be reached stays a 503 (try again); a reachable one without the key is a 409.
  const device = seal.importDevice();
  if (device && label !== null && (await device.token.findAesKey(label)) === null) throw mismatch();
  let root: RootKey;
  try {
    root = await seal.unsealRoot({ rootVersion: Number(row.root_version), rootCheck, hsmKeyLabel: label, rootChain: byteaOf(row.root_chain) });
  } catch (err) {
    // The key object is there (or the seal has no device to ask): one that fails the root check is another key.
    if (device && label !== null) throw mismatch();
    throw err;
  }
  root.destroy();
}
