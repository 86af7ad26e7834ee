/** Output files that hold credentials (unseal shares, secret ids): never world-readable, never overwritten. */
import { open, unlink } from 'node:fs/promises';
import { CliError } from './errors.js';

/**
 * Creates `file` (mode 0600; it must not exist yet) BEFORE `produce` runs, so a
 * bad path fails before anything is created on the server; then writes what
 * `produce` returns. If `produce` or the write fails, the empty file is removed.
 */
export async function writeNewPrivateFile<T>(file: string, produce: () => Promise<{ content: string; result: T }>): Promise<T> {
  let handle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unwritable';
    throw new CliError(code === 'EEXIST' ? `${file} already exists; it is not overwritten (move it away or name another file)` : `cannot create ${file} (${code})`);
  }
  let written = false;
  try {
    const { content, result } = await produce();
    await handle.writeFile(content);
    await handle.sync();
    written = true;
    return result;
  } finally {
    await handle.close();
    if (!written) await unlink(file).catch(() => undefined);
  }
}
