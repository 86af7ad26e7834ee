/**
 * Scheduled backups (COFFER_BACKUP_DIR, _INTERVAL_SECONDS, _KEEP): while
 * unsealed, a backup (vault/backup.ts) is written to the directory whenever
 * the newest one there is older than the interval, and only the newest `keep`
 * are kept. The age is read from the directory, not from a timer, so restarts
 * and unseals do not add backups, and on a cluster the job's lock lets one
 * server write at a time.
 *
 * Files are created 0600 in a 0700 directory, written as `.partial` and
 * renamed once complete and fsynced: a crash or a full disk never leaves a
 * truncated file under a backup's name, and never deletes a good one.
 */
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobSpec } from './scheduler.js';

export const SCHEDULED_BACKUP_JOB = 'scheduled-backup';

/** How often the job looks at the directory (the interval itself may be a day). */
const CHECK_EVERY_MS = 60_000;

const NAME = /^coffer-backup-(\d{8}T\d{6}\d{3}Z)\.ndjson$/;

/** coffer-backup-20260130T101500123Z.ndjson: sorts by time. */
export function backupFileName(at: Date): string {
  return `coffer-backup-${at.toISOString().replace(/[-:.]/g, '')}.ndjson`;
}

function timeOf(name: string): number {
  const m = NAME.exec(name)![1]!;
  return Date.parse(`${m.slice(0, 4)}-${m.slice(4, 6)}-${m.slice(6, 8)}T${m.slice(9, 11)}:${m.slice(11, 13)}:${m.slice(13, 15)}.${m.slice(15, 18)}Z`);
}

export interface ScheduledBackupOptions {
  dir: string;
  intervalMs: number;
  keep: number;
  /** Writes one backup through `write` (CofferCore.backup). */
  backup(write: (chunk: string) => Promise<void>): Promise<void>;
  onWritten?(file: string, bytes: number): void;
  now?(): Date;
}

/** Writes a backup if the newest is due, then prunes; returns the file written, if any. */
export async function runScheduledBackup(o: ScheduledBackupOptions): Promise<string | null> {
  const now = o.now?.() ?? new Date();
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const existing = (await readdir(o.dir)).filter((n) => NAME.test(n)).sort();
  const newest = existing.length > 0 ? timeOf(existing[existing.length - 1]!) : null;
  if (newest !== null && now.getTime() - newest < o.intervalMs) return null;

  const name = backupFileName(now);
  const partial = join(o.dir, `${name}.partial`);
  const file = await open(partial, 'w', 0o600);
  let bytes = 0;
  try {
    await o.backup(async (chunk) => {
      bytes += Buffer.byteLength(chunk);
      await file.write(chunk);
    });
    await file.sync();
  } catch (err) {
    await file.close();
    await unlink(partial).catch(() => undefined);
    throw err;
  }
  await file.close();
  await rename(partial, join(o.dir, name));
  o.onWritten?.(name, bytes);
  const all = [...existing, name];
  for (const old of all.slice(0, Math.max(0, all.length - o.keep))) await unlink(join(o.dir, old)).catch(() => undefined);
  return name;
}

export function scheduledBackupJob(options: ScheduledBackupOptions): JobSpec {
  return {
    name: SCHEDULED_BACKUP_JOB,
    intervalMs: Math.min(CHECK_EVERY_MS, options.intervalMs),
    run: async () => {
      await runScheduledBackup(options);
    },
  };
}
