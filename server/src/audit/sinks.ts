/**
 * Where audit entries go besides the database chain: JSON lines appended to a
 * file (fsynced per batch) or written to stdout. A batch is acknowledged only
 * when every enabled sink has it.
 */
import { open, type FileHandle } from 'node:fs/promises';

export interface LineSink {
  readonly name: string;
  write(lines: string): Promise<void>;
  close(): Promise<void>;
}

/** How far back a torn last line is looked for at a time when the file is opened. */
const TAIL_CHUNK = 64 * 1024;

/**
 * A file of complete lines only. A write that fails part-way (a full disk takes
 * what fits) is cut back to where it started, so a refused batch leaves no
 * partial line; a torn line left by a crash mid-write (never acknowledged: the
 * batch is fsynced before it counts) is trimmed when the file is next opened.
 * One server process writes a given file (another appending between our size
 * check and a cut-back could lose its lines).
 */
export class FileSink implements LineSink {
  private handle: Promise<FileHandle> | null = null;

  constructor(private readonly file: string) {}

  get name(): string {
    return `file:${this.file}`;
  }

  async write(lines: string): Promise<void> {
    // Opened lazily and re-opened after a failure (the file may have been rotated or fixed).
    this.handle ??= openAtLineEnd(this.file);
    let fh: FileHandle | undefined;
    let start: number | undefined;
    try {
      fh = await this.handle;
      // From the file itself, not remembered: a rotation by copy-and-truncate moves the end.
      start = (await fh.stat()).size;
      await fh.appendFile(lines, 'utf8');
      await fh.sync();
    } catch (err) {
      if (fh && start !== undefined) {
        // If even this fails, the reopen below trims the torn line before the next write.
        await fh.truncate(start).then(() => fh!.sync()).catch(() => {});
      }
      const stale = this.handle;
      this.handle = null;
      stale?.then((h) => h.close()).catch(() => {});
      throw err;
    }
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    await h?.then((fh) => fh.close()).catch(() => {});
  }
}

/** Opens for appending; if the file ends in a partial line, cuts it off first. */
async function openAtLineEnd(file: string): Promise<FileHandle> {
  const fh = await open(file, 'a+', 0o600);
  try {
    const size = (await fh.stat()).size;
    const end = await lastLineEnd(fh, size);
    if (end !== size) {
      await fh.truncate(end);
      await fh.sync();
    }
    return fh;
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

/** The offset just after the file's last newline (0 if it has none). */
async function lastLineEnd(fh: FileHandle, size: number): Promise<number> {
  let end = size;
  const buf = Buffer.alloc(TAIL_CHUNK);
  while (end > 0) {
    const from = Math.max(0, end - TAIL_CHUNK);
    const { bytesRead } = await fh.read(buf, 0, end - from, from);
    const at = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (at !== -1) return from + at + 1;
    end = from;
  }
  return 0;
}

export class StdoutSink implements LineSink {
  readonly name = 'stdout';

  write(lines: string): Promise<void> {
    return new Promise((resolve, reject) => {
      process.stdout.write(lines, (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(): Promise<void> {}
}
