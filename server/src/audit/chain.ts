/**
 * The audit hash chain: entry n commits to entry n-1 by including its hash,
 * hash_n = SHA-256(hash_{n-1} ‖ body_n), starting from 32 zero bytes. Editing,
 * deleting or reordering rows breaks a link; dropping the newest rows is
 * caught by signed checkpoints ("the chain up to seq s has hash h").
 */
import { createHmac, hash, timingSafeEqual } from 'node:crypto';

export const GENESIS_HASH = new Uint8Array(32);

/**
 * SHA-256(prevHash ‖ UTF-8 of body). One-shot (crypto.hash over one buffer) rather than a Hash
 * object with two updates: this runs for every audit entry, and the object's set-up cost about
 * as much as the hashing.
 */
export function chainHash(prevHash: Uint8Array, body: string): Uint8Array {
  const input = Buffer.allocUnsafe(prevHash.length + Buffer.byteLength(body, 'utf8'));
  input.set(prevHash, 0);
  input.write(body, prevHash.length, 'utf8');
  return hash('sha256', input, 'buffer');
}

/**
 * `chainHash` with the hashes as binary strings (latin1: one char per byte), as the writer chains
 * them: a digest returned as a Buffer costs more than the hashing (an external allocation per
 * entry), a short string does not.
 */
export function chainHashBinary(prevHash: string, body: string): string {
  const input = Buffer.allocUnsafe(prevHash.length + Buffer.byteLength(body, 'utf8'));
  input.write(prevHash, 0, 'latin1');
  input.write(body, prevHash.length, 'utf8');
  return hash('sha256', input, 'binary'); // 'binary' is latin1
}

/** The bytes a checkpoint signature covers. */
function checkpointMessage(seq: number, hash: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`coffer-audit-checkpoint/v1:${seq}:`), hash]);
}

export function signCheckpoint(key: Uint8Array, seq: number, hash: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(checkpointMessage(seq, hash)).digest());
}

export function checkpointValid(key: Uint8Array, seq: number, hash: Uint8Array, signature: Uint8Array): boolean {
  const expected = signCheckpoint(key, seq, hash);
  return expected.length === signature.length && timingSafeEqual(expected, signature);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
