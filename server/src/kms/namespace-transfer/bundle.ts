/**
 * The sealed lines of a namespace export bundle (format: @coffer/sdk/api
 * namespace-transfer.ts). Writing: a fresh transfer key wrapped for the
 * target's import key, then one AES-256-GCM record per line, bound to the
 * header's bytes and its sequence number. Reading: the header checked, then
 * every record opened in order once the target has unwrapped the transfer key.
 *
 * Every failure to open says only that the bundle was altered or is not whole:
 * which check failed tells an attacker nothing useful, and the import key that
 * unwrapped the transfer key is spent either way (kms/byok.ts).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, type KeyObject } from 'node:crypto';
import {
  NAMESPACE_EXPORT_FORMAT,
  NAMESPACE_EXPORT_WRAPPING,
  type NamespaceExportHeader,
  type NamespaceExportRecord,
} from '@coffer/sdk/api';
import { z } from 'zod';
import { zeroize, type KeyMaterial } from '../../crypto/aead.js';
import { CofferError } from '../../errors.js';
import { wrapForEscrow } from '../escrow.js';

const HEADER_KEY = 'coffer_namespace_export';
const NONCE = 12;
const TAG = 16;

/** SHA-256 (hex) of a public key's DER SubjectPublicKeyInfo: how a bundle names the key that opens it. */
export function publicKeyFingerprint(key: KeyObject): string {
  return createHash('sha256').update(key.export({ format: 'der', type: 'spki' })).digest('hex');
}

function recordAad(headerDigest: Buffer, seq: number): Buffer {
  const out = Buffer.alloc(headerDigest.length + 4);
  headerDigest.copy(out);
  out.writeUInt32BE(seq, headerDigest.length);
  return out;
}

export const invalidBundle = (message = 'the bundle was altered or is not whole: it does not open with its transfer key') =>
  new CofferError('invalid_bundle', message);

/** Writes a bundle line by line; `close` writes the end record and zeroes the transfer key. */
export class BundleWriter {
  private readonly key: Buffer = randomBytes(32);
  private readonly digest: Buffer;
  private seq = 0;
  readonly headerLine: string;

  constructor(
    fields: Pick<NamespaceExportHeader, 'namespace' | 'skipped_keys'>,
    target: KeyObject,
  ) {
    const header: NamespaceExportHeader = {
      format: NAMESPACE_EXPORT_FORMAT,
      namespace: fields.namespace,
      created_at: new Date().toISOString(),
      target_key_sha256: publicKeyFingerprint(target),
      wrapping_algorithm: NAMESPACE_EXPORT_WRAPPING,
      wrapped_transfer_key: wrapForEscrow(this.key, target, NAMESPACE_EXPORT_WRAPPING).toString('base64'),
      content_cipher: 'AES-256-GCM',
      skipped_keys: fields.skipped_keys,
    };
    this.headerLine = JSON.stringify({ [HEADER_KEY]: header });
    this.digest = createHash('sha256').update(this.headerLine).digest();
  }

  /** One sealed line (with its "\n"). The plaintext JSON is zeroed once sealed. */
  seal(record: NamespaceExportRecord): string {
    const plain = Buffer.from(JSON.stringify(record), 'utf8');
    try {
      const nonce = randomBytes(NONCE);
      const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
      cipher.setAAD(recordAad(this.digest, this.seq));
      const sealed = Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return `${JSON.stringify({ seq: this.seq++, sealed: sealed.toString('base64') })}\n`;
    } finally {
      plain.fill(0);
    }
  }

  get records(): number {
    return this.seq;
  }

  destroy(): void {
    this.key.fill(0);
  }
}

/**
 * The shape of an opened record. Sealed records come from a server that held
 * the transfer key, but a bundle made by other software (or a newer Coffer)
 * is still refused as a 400, never stored half-understood.
 */
const time = z.iso.datetime({ offset: true });
const version = z.number().int().min(1).max(2 ** 31 - 1);
const strings = z.record(z.string(), z.string());
const RECORD = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('namespace'), description: z.string().max(1024), rotation_period: z.number().int().min(3600).max(315_360_000).nullable() }),
  z.object({
    kind: z.literal('secret'),
    path: z.string().min(1).max(512),
    current_version: version,
    max_versions: z.number().int().min(1).max(1000),
    created_at: time,
    updated_at: time,
    versions: z.array(
      z.object({
        version,
        type: z.string().max(32),
        metadata: strings,
        data: strings.nullable(),
        created_at: time,
        deleted_at: time.nullable(),
        destroyed_at: time.nullable(),
      }),
    ),
  }),
  z.object({
    kind: z.literal('key'),
    id: z.uuid(),
    name: z.string().min(1).max(128),
    type: z.string().max(32),
    origin: z.enum(['internal', 'external']),
    latest_version: version,
    min_decryption_version: z.number().int().min(0),
    min_encryption_version: z.number().int().min(0),
    deletion_allowed: z.boolean(),
    auto_rotate_period: z.number().int().min(1).nullable(),
    versions: z.array(z.object({ version, material: z.base64(), created_at: time })).min(1),
  }),
  z.object({ kind: z.literal('end'), records: z.number().int(), secrets: z.number().int(), versions: z.number().int(), keys: z.number().int() }),
]);

/** A bundle's header and its sealed lines, checked for shape only (nothing opened yet). */
export interface ParsedBundle {
  header: NamespaceExportHeader;
  digest: Buffer;
  sealed: Buffer[];
}

export function parseBundle(text: string): ParsedBundle {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const first = lines.shift();
  let header: NamespaceExportHeader | undefined;
  try {
    header = first === undefined ? undefined : ((JSON.parse(first) as Record<string, unknown>)[HEADER_KEY] as NamespaceExportHeader | undefined);
  } catch {
    header = undefined;
  }
  if (!header || typeof header !== 'object') throw invalidBundle('this is not a Coffer namespace export (its first line is not the bundle header)');
  if (header.format !== NAMESPACE_EXPORT_FORMAT) {
    throw invalidBundle(`this bundle has format ${String(header.format)}; this server reads format ${NAMESPACE_EXPORT_FORMAT}: import it with a Coffer version that knows it`);
  }
  if (header.wrapping_algorithm !== NAMESPACE_EXPORT_WRAPPING || header.content_cipher !== 'AES-256-GCM') throw invalidBundle('this bundle uses an unknown wrapping or cipher');
  if (typeof header.target_key_sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(header.target_key_sha256)) throw invalidBundle('the bundle header names no target key');
  if (typeof header.wrapped_transfer_key !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(header.wrapped_transfer_key) || header.wrapped_transfer_key.length > 8192) {
    throw invalidBundle('the bundle header holds no wrapped transfer key');
  }
  if (typeof header.namespace !== 'string' || !Array.isArray(header.skipped_keys)) throw invalidBundle('the bundle header is incomplete');
  const sealed = lines.map((line, i) => {
    let parsed: { seq?: unknown; sealed?: unknown };
    try {
      parsed = JSON.parse(line) as { seq?: unknown; sealed?: unknown };
    } catch {
      throw invalidBundle(`line ${i + 2} of the bundle is not JSON`);
    }
    if (parsed.seq !== i || typeof parsed.sealed !== 'string') throw invalidBundle(`line ${i + 2} of the bundle is not record ${i}`);
    const bytes = Buffer.from(parsed.sealed, 'base64');
    if (bytes.length < NONCE + TAG) throw invalidBundle();
    return bytes;
  });
  return { header, digest: createHash('sha256').update(first!).digest(), sealed };
}

/**
 * Opens every record in order with the unwrapped transfer key (zeroed here).
 * The last must be the end record counting them all.
 */
export function openRecords(bundle: ParsedBundle, transferKey: KeyMaterial): NamespaceExportRecord[] {
  try {
    if (transferKey.length !== 32) throw invalidBundle();
    const records = bundle.sealed.map((bytes, seq) => {
      const decipher = createDecipheriv('aes-256-gcm', transferKey, bytes.subarray(0, NONCE));
      decipher.setAAD(recordAad(bundle.digest, seq));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(bytes.subarray(NONCE, bytes.length - TAG)), decipher.final()]);
      } catch {
        throw invalidBundle();
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(plain.toString('utf8'));
      } catch {
        throw invalidBundle(`record ${seq} of the bundle is not JSON`);
      } finally {
        plain.fill(0);
      }
      const checked = RECORD.safeParse(parsed);
      if (!checked.success) throw invalidBundle(`record ${seq} of the bundle is not one this server reads (${checked.error.issues[0]?.path.join('.') || 'kind'}): import it with the Coffer version that made it`);
      return checked.data as NamespaceExportRecord;
    });
    const end = records.at(-1);
    if (!end || end.kind !== 'end' || end.records !== records.length) throw invalidBundle('the bundle is truncated: its end record is missing');
    return records;
  } finally {
    zeroize(transferKey);
  }
}
