/**
 * Envelope encryption of data of any size under a fresh data key: the server
 * hands out a 256-bit data key (plaintext and wrapped by a named key), the data
 * is encrypted here, and only the wrapped key is kept, in the envelope's header.
 * Only the data key crosses the network, never the data.
 *
 * Format, version 1 (integers unsigned big-endian):
 *
 *   header
 *     magic        4 bytes   "CFEV" (43 46 45 56)
 *     version      1 byte    1
 *     algorithm    1 byte    1 = AES-256-GCM
 *     chunk_size   4 bytes   plaintext bytes per chunk, 1024 .. 16777216 (default 65536)
 *     meta_length  4 bytes   1 .. 65536
 *     meta         UTF-8 JSON object: {"namespace": string, "key": string, "key_version": integer,
 *                  "wrapped_key": "coffer:v<n>:<base64>"} (other members are ignored)
 *   records, one per chunk; at least one
 *     nonce        12 bytes  random
 *     ciphertext   AES-256-GCM of the chunk under the data key (same length as the chunk)
 *     tag          16 bytes
 *
 * Every chunk but the last holds exactly chunk_size bytes; the last holds
 * 0 .. chunk_size (an empty input is one empty record). The AAD of record i
 * (counting from 0) is SHA-256(header bytes) (32) ‖ i (8) ‖ final (1 byte: 1 for
 * the last record, else 0). So a changed header, a record moved, dropped or
 * added, and a cut at a record boundary all fail authentication.
 *
 * The data key is the `plaintext` of POST datakey/plaintext with 256 bits;
 * `wrapped_key` is its `ciphertext`, which decrypt with the same named key
 * turns back into it.
 *
 * Streaming decryption hands out each chunk once it is authenticated: a later
 * chunk can still fail, so output must not count as complete until the stream
 * ends without error (decryptFile writes a temporary file and renames it).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { CofferError, invalidArgument } from './errors.js';

export const ENVELOPE_MAGIC = Buffer.from('CFEV', 'ascii');
export const ENVELOPE_VERSION = 1;
export const ENVELOPE_AES_256_GCM = 1;
export const ENVELOPE_DEFAULT_CHUNK = 64 * 1024;
export const ENVELOPE_MIN_CHUNK = 1024;
export const ENVELOPE_MAX_CHUNK = 16 * 1024 * 1024;
const MAX_META = 64 * 1024;
const FIXED_HEADER = 14;
const NONCE = 12;
const TAG = 16;
const KEY_BYTES = 32;

/** What the header says about the data key. */
export interface EnvelopeMeta {
  namespace: string;
  key: string;
  key_version: number;
  wrapped_key: string;
}

export interface EnvelopeOptions {
  /** Plaintext bytes per chunk (default 64 KiB). */
  chunkSize?: number;
}

/** Turns the header's wrapped key into the 32-byte data key (normally: KMS decrypt). */
export type Unwrap = (meta: EnvelopeMeta) => Promise<Uint8Array>;

const envelopeError = (message: string) => new CofferError(0, 'invalid_envelope', message);

export function encodeEnvelopeHeader(meta: EnvelopeMeta, chunkSize = ENVELOPE_DEFAULT_CHUNK): Buffer {
  checkChunkSize(chunkSize);
  const json = Buffer.from(
    JSON.stringify({ namespace: meta.namespace, key: meta.key, key_version: meta.key_version, wrapped_key: meta.wrapped_key }),
    'utf8',
  );
  if (json.length > MAX_META) throw invalidArgument('envelope metadata is too long');
  const fixed = Buffer.alloc(FIXED_HEADER);
  ENVELOPE_MAGIC.copy(fixed, 0);
  fixed[4] = ENVELOPE_VERSION;
  fixed[5] = ENVELOPE_AES_256_GCM;
  fixed.writeUInt32BE(chunkSize, 6);
  fixed.writeUInt32BE(json.length, 10);
  return Buffer.concat([fixed, json]);
}

function checkChunkSize(size: number): void {
  if (!Number.isInteger(size) || size < ENVELOPE_MIN_CHUNK || size > ENVELOPE_MAX_CHUNK) {
    throw invalidArgument(`the chunk size must be an integer from ${ENVELOPE_MIN_CHUNK} to ${ENVELOPE_MAX_CHUNK}`);
  }
}

function checkKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw invalidArgument('the data key must be 32 bytes (AES-256)');
}

function recordAad(headerHash: Buffer, index: number, final: boolean): Buffer {
  const aad = Buffer.alloc(32 + 8 + 1);
  headerHash.copy(aad, 0);
  aad.writeBigUInt64BE(BigInt(index), 32);
  aad[40] = final ? 1 : 0;
  return aad;
}

/** Bytes gathered from a stream until a whole record (or header) is there. */
class ByteQueue {
  private parts: Buffer[] = [];
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.length += chunk.length;
  }

  /** The first n bytes (n <= length), removed. */
  take(n: number): Buffer {
    const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.parts = all.length > n ? [all.subarray(n)] : [];
    this.length -= n;
    return all.subarray(0, n);
  }

  peek(n: number): Buffer {
    const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.parts = all.length ? [all] : [];
    return all.subarray(0, n);
  }
}

/** The envelope of `source` under `dataKey` (32 bytes), header first. */
export async function* envelopeEncrypt(
  source: AsyncIterable<Uint8Array>,
  dataKey: Uint8Array,
  meta: EnvelopeMeta,
  options: EnvelopeOptions = {},
): AsyncGenerator<Buffer> {
  checkKey(dataKey);
  const chunkSize = options.chunkSize ?? ENVELOPE_DEFAULT_CHUNK;
  const header = encodeEnvelopeHeader(meta, chunkSize);
  const headerHash = createHash('sha256').update(header).digest();
  yield header;
  const seal = (chunk: Buffer, index: number, final: boolean): Buffer => {
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('aes-256-gcm', dataKey, nonce);
    cipher.setAAD(recordAad(headerHash, index, final));
    const body = Buffer.concat([cipher.update(chunk), cipher.final()]);
    return Buffer.concat([nonce, body, cipher.getAuthTag()]);
  };
  const queue = new ByteQueue();
  let index = 0;
  for await (const chunk of source) {
    queue.push(chunk);
    // Strictly more than a chunk: the last full chunk must wait to learn whether it is the final one.
    while (queue.length > chunkSize) yield seal(queue.take(chunkSize), index++, false);
  }
  yield seal(queue.take(queue.length), index, true);
}

/** Parses and checks a header at the start of `queue`; null while more bytes are needed. */
function readHeader(queue: ByteQueue): { header: Buffer; meta: EnvelopeMeta; chunkSize: number } | null {
  if (queue.length < FIXED_HEADER) return null;
  const fixed = queue.peek(FIXED_HEADER);
  if (!fixed.subarray(0, 4).equals(ENVELOPE_MAGIC)) throw envelopeError('not a Coffer envelope (no CFEV header)');
  if (fixed[4] !== ENVELOPE_VERSION) throw envelopeError(`unsupported envelope version ${fixed[4]}`);
  if (fixed[5] !== ENVELOPE_AES_256_GCM) throw envelopeError(`unsupported envelope algorithm ${fixed[5]}`);
  const chunkSize = fixed.readUInt32BE(6);
  const metaLength = fixed.readUInt32BE(10);
  if (chunkSize < ENVELOPE_MIN_CHUNK || chunkSize > ENVELOPE_MAX_CHUNK) throw envelopeError('envelope header: invalid chunk size');
  if (metaLength < 1 || metaLength > MAX_META) throw envelopeError('envelope header: invalid metadata length');
  if (queue.length < FIXED_HEADER + metaLength) return null;
  const header = queue.take(FIXED_HEADER + metaLength);
  let parsed: unknown;
  try {
    parsed = JSON.parse(header.subarray(FIXED_HEADER).toString('utf8'));
  } catch {
    throw envelopeError('envelope header: metadata is not JSON');
  }
  const m = parsed as Partial<EnvelopeMeta> | null;
  if (
    typeof m !== 'object' || m === null ||
    typeof m.namespace !== 'string' || typeof m.key !== 'string' || typeof m.wrapped_key !== 'string' ||
    !Number.isInteger(m.key_version)
  ) {
    throw envelopeError('envelope header: metadata lacks namespace, key, key_version or wrapped_key');
  }
  return { header, meta: { namespace: m.namespace, key: m.key, key_version: m.key_version!, wrapped_key: m.wrapped_key }, chunkSize };
}

/** The plaintext of an envelope, chunk by chunk as each is authenticated; `unwrap` gives the data key. */
export async function* envelopeDecrypt(source: AsyncIterable<Uint8Array>, unwrap: Unwrap): AsyncGenerator<Buffer> {
  const queue = new ByteQueue();
  let parsed: ReturnType<typeof readHeader> = null;
  let key: Uint8Array | undefined;
  let headerHash = Buffer.alloc(0);
  let recordSize = 0;
  let index = 0;
  const openRecord = (record: Buffer, final: boolean): Buffer => {
    const decipher = createDecipheriv('aes-256-gcm', key!, record.subarray(0, NONCE));
    decipher.setAAD(recordAad(headerHash, index, final));
    decipher.setAuthTag(record.subarray(record.length - TAG));
    try {
      return Buffer.concat([decipher.update(record.subarray(NONCE, record.length - TAG)), decipher.final()]);
    } catch {
      throw envelopeError(
        `envelope chunk ${index} fails authentication: the data was altered, cut short, extended or reordered, or the data key is wrong`,
      );
    }
  };
  try {
    for await (const chunk of source) {
      queue.push(chunk);
      if (!parsed) {
        parsed = readHeader(queue);
        if (!parsed) continue;
        headerHash = createHash('sha256').update(parsed.header).digest();
        recordSize = parsed.chunkSize + NONCE + TAG;
        key = await unwrap(parsed.meta);
        checkKey(key);
      }
      while (queue.length > recordSize) {
        yield openRecord(queue.take(recordSize), false);
        index++;
      }
    }
    if (!parsed) throw envelopeError('not a Coffer envelope (the input ends inside the header)');
    if (queue.length < NONCE + TAG) throw envelopeError('the envelope is truncated (no final chunk)');
    yield openRecord(queue.take(queue.length), true);
  } finally {
    key?.fill(0);
  }
}

/** The header's metadata (namespace, key, version) without decrypting anything. */
export async function readEnvelopeMeta(source: AsyncIterable<Uint8Array>): Promise<EnvelopeMeta> {
  const queue = new ByteQueue();
  for await (const chunk of source) {
    queue.push(chunk);
    const parsed = readHeader(queue);
    if (parsed) return parsed.meta;
  }
  throw envelopeError('not a Coffer envelope (the input ends inside the header)');
}

export interface FileProgress {
  /** Input bytes read so far. */
  done: number;
  /** The input file's size. */
  total: number;
}

export interface FileOptions {
  onProgress?: (progress: FileProgress) => void;
  /** Mode of a created output file (default 0600). */
  mode?: number;
}

/**
 * Streams `input` through `transform` into `output`, via a temporary file in
 * the output's folder renamed at the end: a failure leaves no output, never a
 * partial (possibly unauthenticated) one.
 */
export async function transformFile(
  input: string,
  output: string,
  transform: (source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>,
  options: FileOptions = {},
): Promise<{ bytesIn: number; bytesOut: number }> {
  const total = (await stat(input)).size;
  const temp = path.join(path.dirname(output), `.${path.basename(output)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', options.mode ?? 0o600);
  let bytesIn = 0;
  let bytesOut = 0;
  let ok = false;
  try {
    const counted = async function* (): AsyncGenerator<Uint8Array> {
      for await (const chunk of createReadStream(input, { highWaterMark: ENVELOPE_DEFAULT_CHUNK }) as AsyncIterable<Buffer>) {
        bytesIn += chunk.length;
        yield chunk;
        options.onProgress?.({ done: bytesIn, total });
      }
    };
    for await (const chunk of transform(counted())) {
      await handle.write(chunk);
      bytesOut += chunk.length;
    }
    await handle.sync();
    ok = true;
  } finally {
    await handle.close();
    if (ok) await rename(temp, output);
    else await unlink(temp).catch(() => undefined);
  }
  return { bytesIn, bytesOut };
}
