// The SDK's envelope format (sdk/src/envelope.ts) without a server: round trips at chunk
// boundaries, interop with an independent node:crypto implementation of the documented format
// (both ways, under a known data key), tamper detection (truncation, reordering, flipped bytes,
// a changed header, a wrong key), and files that appear only when every chunk authenticated.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CofferError, envelopeDecrypt, envelopeEncrypt, readEnvelopeMeta, transformFile, type EnvelopeMeta } from '@coffer/sdk';
import { referenceDecrypt, referenceEncrypt } from '../fixtures/envelope-reference.js';

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const META: EnvelopeMeta = { namespace: 'app', key: 'files', key_version: 3, wrapped_key: 'coffer:v3:AAAA' };
const RECORD_OVERHEAD = 28;

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of source) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

const seal = (data: Buffer, chunkSize?: number, feed = 4096) => collect(envelopeEncrypt(pieces(data, feed), KEY, META, { chunkSize }));
const unwrapTo = (key: Buffer) => async (meta: EnvelopeMeta) => {
  expect(meta).toEqual(META);
  return Buffer.from(key);
};
const openEnvelope = (envelope: Buffer, key = KEY, feed = 3000) => collect(envelopeDecrypt(pieces(envelope, feed), unwrapTo(key)));

async function rejection(promise: Promise<unknown>): Promise<CofferError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CofferError);
  expect((err as CofferError).code).toBe('invalid_envelope');
  return err as CofferError;
}

/** Buffer.equals: jest's toEqual walks a large Buffer element by element (minutes per MiB under load). */
function expectSame(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected)).toBe(true);
}

function headerLength(envelope: Buffer): number {
  return 14 + envelope.readUInt32BE(10);
}

describe('envelope round trips', () => {
  it.each([0, 1, 1023, 1024, 1025, 4096, 3 * 1024 + 5])('%i bytes in 1 KiB chunks', async (size) => {
    const data = randomBytes(size);
    const envelope = await seal(data, 1024, 700);
    const records = Math.max(1, Math.ceil(size / 1024));
    expect(envelope.length).toBe(headerLength(envelope) + size + records * RECORD_OVERHEAD);
    expectSame(await openEnvelope(envelope), data);
  });

  it('1 MiB + 7 bytes in the default 64 KiB chunks', async () => {
    const data = randomBytes(1024 * 1024 + 7);
    const envelope = await seal(data, undefined, 100_000);
    expect(envelope.readUInt32BE(6)).toBe(65536);
    expect(envelope.length).toBe(headerLength(envelope) + data.length + 17 * RECORD_OVERHEAD);
    expectSame(await openEnvelope(envelope, KEY, 65536 + 28), data);
  });

  it('the header names the key without decrypting', async () => {
    const envelope = await seal(Buffer.from('hello'));
    expect(await readEnvelopeMeta(pieces(envelope, 5))).toEqual(META);
    // Nothing of the plaintext is in the envelope.
    expect(envelope.includes(Buffer.from('hello'))).toBe(false);
  });

  it('refuses a data key that is not 32 bytes and a chunk size out of range', async () => {
    await expect(collect(envelopeEncrypt(pieces(Buffer.from('x'), 1), KEY.subarray(0, 16), META))).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(seal(Buffer.from('x'), 100)).rejects.toMatchObject({ code: 'invalid_argument' });
  });
});

describe('interop with a plain node:crypto implementation of the documented format', () => {
  it('the reference decrypts what the SDK encrypts', async () => {
    for (const [size, chunk] of [[0, 1024], [2048, 1024], [5000, 1024], [200_000, 65536]] as const) {
      const data = randomBytes(size);
      const { meta, plaintext } = referenceDecrypt(await seal(data, chunk), KEY);
      expect(meta).toEqual(META);
      expectSame(plaintext, data);
    }
  });

  it('the SDK decrypts what the reference encrypts', async () => {
    for (const [size, chunk] of [[0, 1024], [2048, 1024], [5000, 1024], [200_000, 65536]] as const) {
      const data = randomBytes(size);
      expectSame(await openEnvelope(referenceEncrypt(data, KEY, META, chunk)), data);
    }
  });
});

describe('tampering is detected', () => {
  const data = randomBytes(4 * 1024 + 100); // five records of 1 KiB chunks
  let envelope: Buffer;
  let h: number;
  const record = 1024 + RECORD_OVERHEAD;
  beforeAll(async () => {
    envelope = await seal(data, 1024);
    h = headerLength(envelope);
  });

  it('truncation at a record boundary, inside a record, and of every record', async () => {
    expect((await rejection(openEnvelope(envelope.subarray(0, h + 4 * record)))).message).toMatch(/chunk 3 fails authentication/);
    await rejection(openEnvelope(envelope.subarray(0, h + 2 * record + 500)));
    await rejection(openEnvelope(envelope.subarray(0, envelope.length - 1)));
    expect((await rejection(openEnvelope(envelope.subarray(0, h)))).message).toMatch(/truncated/);
    await rejection(openEnvelope(envelope.subarray(0, h - 3)));
  });

  it('records swapped, dropped or repeated, and bytes appended', async () => {
    const r = (i: number) => envelope.subarray(h + i * record, h + (i + 1) * record);
    const head = envelope.subarray(0, h);
    const last = envelope.subarray(h + 4 * record);
    await rejection(openEnvelope(Buffer.concat([head, r(1), r(0), r(2), r(3), last])));
    await rejection(openEnvelope(Buffer.concat([head, r(0), r(2), r(3), last])));
    await rejection(openEnvelope(Buffer.concat([head, r(0), r(1), r(1), r(2), r(3), last])));
    await rejection(openEnvelope(Buffer.concat([envelope, Buffer.alloc(40)])));
  });

  it('a flipped byte in a nonce, a ciphertext or a tag', async () => {
    for (const at of [h, h + 12, h + record - 1, h + 3 * record + 600, envelope.length - 1]) {
      const bad = Buffer.from(envelope);
      bad[at]! ^= 0x01;
      await rejection(openEnvelope(bad));
    }
  });

  it('a changed header: metadata, magic, version, algorithm, chunk size', async () => {
    const metaStart = 14;
    const changed = Buffer.from(envelope);
    changed[metaStart + envelope.subarray(metaStart).indexOf('"app"') + 1] = 'b'.charCodeAt(0); // namespace app → bpp
    // The unwrap callback sees the changed header; even with the right key, chunk 0 fails.
    await expect(collect(envelopeDecrypt(pieces(changed, 999), async () => Buffer.from(KEY)))).rejects.toMatchObject({
      code: 'invalid_envelope',
      message: expect.stringMatching(/chunk 0 fails authentication/),
    });
    for (const [at, value, reason] of [[0, 0x41, /not a Coffer envelope/], [4, 2, /version 2/], [5, 9, /algorithm 9/]] as const) {
      const bad = Buffer.from(envelope);
      bad[at] = value;
      expect((await rejection(openEnvelope(bad))).message).toMatch(reason);
    }
    const bigger = Buffer.from(envelope);
    bigger.writeUInt32BE(2048, 6);
    await rejection(openEnvelope(bigger));
    const huge = Buffer.from(envelope);
    huge.writeUInt32BE(1 << 30, 6);
    expect((await rejection(openEnvelope(huge))).message).toMatch(/chunk size/);
    const notJson = Buffer.from(envelope);
    notJson[14] = 0x21; // '{' → '!': not JSON
    await rejection(openEnvelope(notJson));
  });

  it('a wrong data key fails on the first chunk', async () => {
    expect((await rejection(openEnvelope(envelope, randomBytes(32)))).message).toMatch(/chunk 0 fails authentication/);
  });
});

describe('files', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-envelope-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the output only when every chunk authenticated, 0600, with progress', async () => {
    const data = randomBytes(300_000);
    const plain = path.join(dir, 'plain.bin');
    const sealed = path.join(dir, 'plain.bin.cfev');
    const opened = path.join(dir, 'opened.bin');
    await writeFile(plain, data);
    const seen: number[] = [];
    await transformFile(plain, sealed, (s) => envelopeEncrypt(s, KEY, META), { onProgress: (p) => seen.push(p.done) });
    expect(seen.at(-1)).toBe(data.length);
    await transformFile(sealed, opened, (s) => envelopeDecrypt(s, unwrapTo(KEY)));
    expectSame(await readFile(opened), data);
    expect((await stat(opened)).mode & 0o777).toBe(0o600);

    const bad = Buffer.from(await readFile(sealed));
    bad[bad.length - 5]! ^= 0xff; // the last chunk: earlier ones were already written to the temporary file
    await writeFile(sealed, bad);
    const target = path.join(dir, 'never.bin');
    await rejection(transformFile(sealed, target, (s) => envelopeDecrypt(s, unwrapTo(KEY))));
    expect((await readdir(dir)).sort()).toEqual(['opened.bin', 'plain.bin', 'plain.bin.cfev']);
  });
});
