// Scheduled backups (jobs/scheduled-backup.ts): written when the newest one is older than the
// interval, 0600 in a 0700 directory, only the newest N kept, and nothing left under a backup's
// name when writing fails.
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { backupFileName, runScheduledBackup, scheduledBackupJob } from '@coffer/server/jobs/scheduled-backup';

describe('scheduled backups', () => {
  let root: string;
  let dir: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'coffer-sched-backup-'));
    dir = path.join(root, 'backups');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const HOUR = 3_600_000;
  const at = (h: number) => new Date(Date.UTC(2026, 0, 30, 0, 0, 0) + h * HOUR);
  let made = 0;
  const options = (now: Date, keep = 3) => ({
    dir,
    intervalMs: 2 * HOUR,
    keep,
    now: () => now,
    backup: async (write: (chunk: string) => Promise<void>) => {
      made += 1;
      await write('line 1\n');
      await write(`backup ${made}\n`);
    },
  });

  it('writes when due, skips when the newest is younger than the interval, and keeps the newest N', async () => {
    made = 0;
    expect(await runScheduledBackup(options(at(0)))).toBe(backupFileName(at(0)));
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(dir, backupFileName(at(0))))).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(dir, backupFileName(at(0))), 'utf8')).toBe('line 1\nbackup 1\n');
    // A restart an hour later does not add one.
    expect(await runScheduledBackup(options(at(1)))).toBeNull();
    for (const h of [2, 4, 6, 8]) expect(await runScheduledBackup(options(at(h)))).not.toBeNull();
    expect((await readdir(dir)).sort()).toEqual([at(4), at(6), at(8)].map(backupFileName));
    expect(made).toBe(5);
  });

  it('leaves no file behind when the backup fails, and tries again on the next run', async () => {
    const failing = { ...options(at(0)), backup: async (write: (chunk: string) => Promise<void>) => {
      await write('half');
      throw new Error('sealed');
    } };
    await expect(runScheduledBackup(failing)).rejects.toThrow('sealed');
    expect(await readdir(dir)).toEqual([]);
    expect(await runScheduledBackup(options(at(0)))).not.toBeNull();
  });

  it('looks at the directory at least every minute, and no more often than the interval', () => {
    expect(scheduledBackupJob({ ...options(at(0)), intervalMs: 86_400_000 }).intervalMs).toBe(60_000);
    expect(scheduledBackupJob({ ...options(at(0)), intervalMs: 30_000 }).intervalMs).toBe(30_000);
  });
});
