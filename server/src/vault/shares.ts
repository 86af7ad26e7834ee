/**
 * Operator shares on their way to a key: collected one request at a time
 * (unseal, generate-root), or given all at once (rotate-root, seal-migrate).
 */
import { openWithKey, zeroize, type KeyMaterial } from '../crypto/aead.js';
import { CofferError } from '../errors.js';
import { ShareCollector, combineShareTexts, decodeShare } from '../seal/shamir.js';

/** One collection in progress; emptied when it completes, fails, is reset, or the server seals. */
export class ShareSlot {
  private collector: ShareCollector | null = null;

  get progress(): number {
    return this.collector?.progress ?? 0;
  }

  /**
   * Adds one operator share. Returns the rebuilt key once the threshold is met (the slot is
   * emptied), else null; a share that fails empties the slot.
   */
  async add(shareText: string, threshold: number): Promise<KeyMaterial | null> {
    const share = decodeShare(shareText, threshold);
    const collector = (this.collector ??= new ShareCollector(threshold));
    try {
      const key = await collector.add(share);
      if (key) this.collector = null;
      return key;
    } catch (err) {
      this.collector = null;
      throw err;
    }
  }

  reset(): void {
    this.collector?.reset();
    this.collector = null;
  }
}

/** Rebuilds a key from operator shares and checks it against `check`; 400 invalid_shares otherwise. */
export async function keyFromShares(
  shareTexts: string[],
  threshold: number,
  check: Uint8Array,
  checkAad: Uint8Array,
  plaintext: Uint8Array,
  what: string,
): Promise<KeyMaterial> {
  const key = await combineShareTexts(shareTexts, threshold);
  if (!key) throw new CofferError('invalid_shares', `${threshold} distinct ${what} shares are needed`);
  let opened: Uint8Array;
  try {
    opened = openWithKey(key, check, checkAad, `the ${what} key check`);
  } catch {
    zeroize(key);
    throw new CofferError('invalid_shares', `the shares do not reconstruct this server's ${what} key`);
  }
  if (Buffer.compare(Buffer.from(opened), Buffer.from(plaintext)) !== 0) {
    zeroize(key);
    throw new CofferError('invalid_shares', `the shares do not reconstruct this server's ${what} key`);
  }
  return key;
}
