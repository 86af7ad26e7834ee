/**
 * A restore upload spooled to disk while it is checked (POST /v1/sys/restore).
 *
 * The upload is written, as it arrives, to a private temp file (0600, created
 * exclusively, unlinked at once where the OS allows: nothing is left behind by
 * a crash or a client that goes away) and checked line by line with the
 * format's own checker (sdk/src/api/backup.ts BackupChecker), hashing as it
 * goes. Only what the proofs need stays in memory: the envelope's shares (never
 * written to disk), the header, the trailer, the seal row and the root-wrapped
 * rows. The restore then proves the shares and the sealed digest and reads the
 * spool again to insert, page by page, in one transaction.
 *
 * The whole upload is spooled before the restore takes the vault's exclusive
 * lock or opens a transaction: a slow (or anonymous, idle) client holds
 * neither, and PGlite's single connection stays free while it sends.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackupChecker, BackupFormatError, tableRows, type ParsedBackup, type Sha256Stream } from '@coffer/sdk/api';
import { CofferError } from '../errors.js';
import { sha256Hex } from './backup.js';
import { MAX_SHARES } from '../seal/shamir.js';

export interface RestoreUploadLimits {
  /** The largest upload accepted (413 beyond). The spool's disk is the real limit. */
  maxBytes: number;
  /** Where the spool file is made (os.tmpdir() when absent). */
  dir?: string | undefined;
}

/** COFFER_MAX_RESTORE_BYTES's default: the spool's disk is the limit that matters. */
export const DEFAULT_MAX_RESTORE_BYTES = 64 * 1024 ** 3;

/** The longest line accepted: a row is at most a secret value (COFFER_MAX_REQUEST_BYTES ≤ 64 MiB) hex-encoded. */
const MAX_LINE_BYTES = 160 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
const ENVELOPE_PREFIX = Buffer.from('{"coffer_restore"');

/** Splits bytes into lines ("\n"), holding only the unfinished one. */
class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  /** The complete lines in `chunk` (with what came before it), decoded as UTF-8, without their "\n". */
  push(chunk: Buffer): string[] {
    const out: string[] = [];
    let from = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, from)) {
      const piece = chunk.subarray(from, nl);
      out.push(this.pendingBytes === 0 ? piece.toString('utf8') : Buffer.concat([...this.pending, piece]).toString('utf8'));
      this.pending = [];
      this.pendingBytes = 0;
      from = nl + 1;
    }
    if (from < chunk.length) {
      this.pendingBytes += chunk.length - from;
      if (this.pendingBytes > MAX_LINE_BYTES) throw new CofferError('invalid_backup', `a line of the backup is longer than ${MAX_LINE_BYTES} bytes`);
      // A copy: the caller's buffer may be reused.
      this.pending.push(Buffer.from(chunk.subarray(from)));
    }
    return out;
  }

  rest(): string {
    return Buffer.concat(this.pending).toString('utf8');
  }
}

const formatError = (err: unknown): unknown =>
  err instanceof BackupFormatError ? new CofferError(err.unsupported ? 'unsupported_backup' : 'invalid_backup', err.message) : err;

const incremental = (): Sha256Stream => {
  const hash = createHash('sha256');
  return { update: (part) => void hash.update(part, 'utf8'), hex: () => hash.digest('hex') };
};

/** The longest share text accepted (a share is 33 bytes: 44 base64 or 66 hex characters). */
const MAX_SHARE_CHARS = 256;

/**
 * The shares of a restore's envelope line (sdk/src/api/backup.ts RestoreEnvelope).
 * Messages never quote a share.
 */
export function readRestoreEnvelope(line: string): string[] {
  const bad = () => new CofferError('invalid_request', 'the restore\'s first line must be {"coffer_restore":{"shares":["…", …]}}, then the backup');
  let envelope: unknown;
  try {
    envelope = JSON.parse(line);
  } catch {
    throw bad();
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(envelope) || Object.keys(envelope).length !== 1) throw bad();
  const inner = envelope.coffer_restore;
  if (!isObject(inner) || Object.keys(inner).length !== 1) throw bad();
  const shares = inner.shares;
  if (!Array.isArray(shares)) throw bad();
  if (shares.length < 1 || shares.length > MAX_SHARES || !shares.every((v): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_SHARE_CHARS)) {
    throw new CofferError('invalid_shares', `give 1 to ${MAX_SHARES} shares, each a non-empty string (base64 or hex)`);
  }
  return shares;
}

/** A checked restore upload: the proofs' material in memory, the rows on disk. */
export class RestoreSpool {
  private constructor(
    private readonly file: FileHandle,
    /** Set when the OS would not unlink an open file: removed at close instead. */
    private readonly path: string | null,
    readonly shares: string[] | null,
    /** Header, trailer, and the rows of the fingerprinted tables only. */
    readonly backup: ParsedBackup,
    /** Rows per table, as counted (and matched against the trailer). */
    readonly counts: Record<string, number>,
  ) {}

  /**
   * Reads `body` to the end into a new spool, checking it; 400 for a malformed
   * backup, 413 beyond `limits.maxBytes`. Nothing is left on disk when it fails.
   */
  static async receive(body: AsyncIterable<Buffer>, limits: RestoreUploadLimits): Promise<RestoreSpool> {
    const path = join(limits.dir ?? tmpdir(), `coffer-restore-${randomBytes(16).toString('hex')}.ndjson`);
    // Created exclusively (no one else's file or link), readable by this user only.
    const file = await open(path, 'wx+', 0o600);
    let kept: string | null = path;
    try {
      await unlink(path);
      kept = null;
    } catch {
      // Windows: unlinked at close.
    }
    try {
      const { shares, backup, counts } = await spool(body, file, limits.maxBytes);
      return new RestoreSpool(file, kept, shares, backup, counts);
    } catch (err) {
      await file.close().catch(() => undefined);
      if (kept) await unlink(kept).catch(() => undefined);
      throw formatError(err);
    }
  }

  /** The spooled backup's lines again, in order, without their "\n". */
  async *lines(): AsyncGenerator<string> {
    const splitter = new LineSplitter();
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    for (let position = 0; ; ) {
      const { bytesRead } = await this.file.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      yield* splitter.push(buffer.subarray(0, bytesRead));
    }
  }

  /** One table's rows, parsed, read again from the spool (see `tableRows`). */
  tableRows(table: string): AsyncIterable<Record<string, unknown>> {
    return tableRows(this.lines(), table);
  }

  async close(): Promise<void> {
    await this.file.close().catch(() => undefined);
    if (this.path) await unlink(this.path).catch(() => undefined);
  }
}

/** The body's own failures (the client went away mid-upload) as a 400, not a server error. */
async function* cutOff(body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const iterator = body[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Buffer>;
    try {
      next = await iterator.next();
    } catch {
      throw new CofferError('invalid_request', 'the upload was cut off before its end: nothing was restored');
    }
    if (next.done) return;
    yield next.value;
  }
}

async function spool(body: AsyncIterable<Buffer>, file: FileHandle, maxBytes: number): Promise<{ shares: string[] | null; backup: ParsedBackup; counts: Record<string, number> }> {
  const checker = new BackupChecker(sha256Hex, incremental());
  const splitter = new LineSplitter();
  let received = 0;
  // Bytes before the first "\n" are held until it is known whether that line is the envelope (the shares never touch the disk).
  let head: Buffer[] | null = [];
  let shares: string[] | null = null;
  const write = async (bytes: Buffer) => {
    for (let off = 0; off < bytes.length; ) off += (await file.write(bytes, off, bytes.length - off)).bytesWritten;
  };
  for await (const chunk of cutOff(body)) {
    received += chunk.length;
    if (received > maxBytes) throw new CofferError('payload_too_large', `a restore upload larger than ${maxBytes} bytes is not accepted (COFFER_MAX_RESTORE_BYTES)`);
    let toDisk = chunk;
    if (head) {
      const nl = chunk.indexOf(10);
      if (nl < 0) {
        head.push(Buffer.from(chunk));
        toDisk = Buffer.alloc(0);
      } else {
        const first = Buffer.concat([...head, chunk.subarray(0, nl + 1)]);
        head = null;
        if (first.subarray(0, ENVELOPE_PREFIX.length).equals(ENVELOPE_PREFIX)) {
          shares = readRestoreEnvelope(first.subarray(0, -1).toString('utf8'));
          toDisk = chunk.subarray(nl + 1);
        } else {
          toDisk = Buffer.concat([first, chunk.subarray(nl + 1)]);
        }
      }
      if (head && received > MAX_LINE_BYTES) throw new CofferError('invalid_backup', `a line of the backup is longer than ${MAX_LINE_BYTES} bytes`);
    }
    if (toDisk.length === 0) continue;
    for (const line of splitter.push(toDisk)) checker.line(line);
    await write(toDisk);
  }
  // No "\n" at all: the whole upload is one unfinished line.
  const rest = head ? Buffer.concat(head).toString('utf8') : splitter.rest();
  const backup = checker.finish(rest);
  return { shares, backup, counts: Object.fromEntries(checker.counts) };
}
