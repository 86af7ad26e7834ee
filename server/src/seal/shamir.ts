/**
 * Software seal: the 256-bit root key split into Shamir shares (threshold of
 * N) with the audited `shamir-secret-sharing` library. A single-share setup
 * (dev mode, or an operator who wants one key) hands out the key itself, as
 * Vault does, since Shamir needs at least two shares.
 */
import { timingSafeEqual } from 'node:crypto';
import { combine, split } from 'shamir-secret-sharing';
import { CofferError } from '../errors.js';
import { KEY_BYTES, zeroize, type KeyMaterial } from '../crypto/aead.js';

export const MAX_SHARES = 255;

export function validateShareConfig(shares: number, threshold: number): string | null {
  if (!Number.isInteger(shares) || shares < 1 || shares > MAX_SHARES) return `shares must be 1 to ${MAX_SHARES}`;
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > shares) return 'threshold must be 1 to shares';
  if (shares > 1 && threshold < 2) return 'threshold must be at least 2 when there is more than one share';
  return null;
}

export async function splitRootKey(key: KeyMaterial, shares: number, threshold: number): Promise<Uint8Array[]> {
  if (shares === 1) return [Uint8Array.from(key)];
  return split(key, shares, threshold);
}

/** Shares travel as base64; hex is accepted too (64/66 hex digits). */
export function encodeShare(share: Uint8Array): string {
  return Buffer.from(share).toString('base64');
}

const HEX = /^[0-9a-fA-F]+$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function decodeShare(text: string, threshold: number): Uint8Array {
  const expected = threshold === 1 ? KEY_BYTES : KEY_BYTES + 1;
  const trimmed = text.trim();
  let bytes: Buffer | null = null;
  if (HEX.test(trimmed) && trimmed.length === expected * 2) bytes = Buffer.from(trimmed, 'hex');
  else if (BASE64.test(trimmed)) bytes = Buffer.from(trimmed, 'base64');
  if (!bytes || bytes.length !== expected) {
    zeroize(bytes);
    throw new CofferError('invalid_shares', `a share is ${expected} bytes, base64 or hex encoded`);
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * Collects shares until the threshold is met. Duplicates are ignored (an
 * operator pasting the same share twice does not count twice).
 */
export class ShareCollector {
  private shares: Uint8Array[] = [];

  constructor(readonly threshold: number) {}

  get progress(): number {
    return this.shares.length;
  }

  /** Adds a share; returns the reconstructed candidate key once the threshold is met. */
  async add(share: Uint8Array): Promise<KeyMaterial | null> {
    if (this.shares.some((s) => s.length === share.length && timingSafeEqual(s, share))) {
      zeroize(share);
      return null;
    }
    this.shares.push(share);
    if (this.shares.length < this.threshold) return null;
    const collected = this.shares;
    this.shares = [];
    try {
      return this.threshold === 1 ? Uint8Array.from(collected[0]!) : await combine(collected);
    } catch {
      throw new CofferError('invalid_shares', 'the shares do not combine; unseal progress was reset');
    } finally {
      zeroize(...collected);
    }
  }

  reset(): void {
    zeroize(...this.shares);
    this.shares = [];
  }
}

/** Rebuilds a key from a list of encoded shares (duplicates ignored); null when fewer than `threshold` distinct ones. */
export async function combineShareTexts(texts: readonly string[], threshold: number): Promise<KeyMaterial | null> {
  const collector = new ShareCollector(threshold);
  try {
    for (const text of texts) {
      const key = await collector.add(decodeShare(text, threshold));
      if (key) return key;
    }
    return null;
  } finally {
    collector.reset();
  }
}
