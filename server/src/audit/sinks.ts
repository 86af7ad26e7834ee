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

export class FileSink implements LineSink {
  private handle: Promise<FileHandle> | null = null;

  constructor(private readonly file: string) {}

  get name(): string {
    return `file:${this.file}`;
  }

  async write(lines: string): Promise<void> {
    // Opened lazily and re-opened after a failure (the file may have been rotated or fixed).
    this.handle ??= open(this.file, 'a', 0o600);
    try {
      const fh = await this.handle;
      await fh.appendFile(lines, 'utf8');
      await fh.sync();
    } catch (err) {
      const stale = this.handle;
      this.handle = null;
      stale?.then((fh) => fh.close()).catch(() => {});
      throw err;
    }
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    await h?.then((fh) => fh.close()).catch(() => {});
  }
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
