/**
 * A backup's root key rebuilt from the ORIGINAL unseal shares (Shamir), for
 * restore (vault/restore.ts) and for proving a backup offline, with no server
 * (`coffer operator backup verify FILE --shares-file F`, which imports this
 * module): the same share combination and root check as an unseal, and the
 * same key checks as POST /v1/sys/backup/verify (verifyKeysOpen).
 *
 * The rebuilt key is zeroed by whoever ends up holding it (RootKey.destroy);
 * no message quotes a share.
 */
import { timingSafeEqual } from 'node:crypto';
import { byteaOf, type BackupVerifyResult, type ParsedBackup } from '@coffer/sdk/api';
import { openWithKey, zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import { CofferError } from '../errors.js';
import { InMemoryRootKey, type RootKey } from '../seal/root-key.js';
import { ROOT_CHECK_PLAINTEXT } from '../seal/seal-context.js';
import { combineShareTexts, MAX_SHARES } from '../seal/shamir.js';
import { verifyKeysOpen, type BackupRowSource } from './backup.js';

/** What a backup's seal_config row says about its root key; 400 invalid_backup when it says nothing usable. */
export function rootRefOf(sealRow: string): { row: Record<string, unknown>; rootCheck: Uint8Array; rootVersion: number } {
  const row = JSON.parse(sealRow) as Record<string, unknown>;
  const rootCheck = byteaOf(row.root_check);
  const rootVersion = Number(row.root_version);
  if (!rootCheck || !Number.isInteger(rootVersion) || rootVersion < 1) {
    throw new CofferError('invalid_backup', 'the backup\'s seal configuration has no root check value');
  }
  return { row, rootCheck, rootVersion };
}

/**
 * The root key `shares` rebuild, checked against the backup's root check value (constant time);
 * 400 invalid_shares when there are too few or they rebuild another key.
 */
export async function rootFromShares(sealRow: string, shares: readonly string[] | null, what = 'restored'): Promise<RootKey> {
  const { row, rootCheck, rootVersion } = rootRefOf(sealRow);
  const threshold = Number(row.threshold);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > MAX_SHARES) {
    throw new CofferError('invalid_backup', 'the backup\'s seal configuration has no valid threshold');
  }
  if (!shares || shares.length === 0) {
    throw new CofferError('invalid_shares', `a Shamir backup is ${what} with ${threshold} of its ORIGINAL unseal shares: they prove the backup is the root key's`);
  }
  const key = await combineShareTexts(shares, threshold);
  if (!key) throw new CofferError('invalid_shares', `${threshold} distinct original unseal shares are needed`);
  let same = false;
  try {
    const opened = openWithKey(key, rootCheck, aad.rootCheck(rootVersion), 'the root key check');
    same = opened.length === ROOT_CHECK_PLAINTEXT.length && timingSafeEqual(opened, ROOT_CHECK_PLAINTEXT);
    zeroize(opened);
  } catch {
    same = false;
  }
  if (!same) {
    zeroize(key);
    throw new CofferError('invalid_shares', 'the shares do not reconstruct the backup\'s root key (a share is wrong or belongs to another Coffer)');
  }
  return new InMemoryRootKey(key, rootVersion);
}

/**
 * Offline, with no server and no database: rebuilds the root key of `backup` (hash-checked
 * by parseBackup, or by a BackupChecker with `rows` reading the other tables again) from `shares`, and proves every wrapped key, value and the sealed
 * digest open (verifyKeysOpen). Counts only; the key is zeroed before this returns. (A PKCS#11
 * backup's root key is in its HSM: its recovery shares do not rebuild it, and are refused here.)
 */
export async function verifyBackupWithShares(backup: ParsedBackup, shares: readonly string[], rows?: BackupRowSource): Promise<BackupVerifyResult> {
  const seal = backup.rows.get('seal_config') ?? [];
  if (seal.length !== 1) throw new CofferError('invalid_backup', 'the backup holds no seal configuration');
  const root = await rootFromShares(seal[0]!, shares, 'verified');
  try {
    return await verifyKeysOpen(backup, root, rows);
  } finally {
    root.destroy();
  }
}
