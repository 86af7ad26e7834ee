// Backups as an attacker edits them, for the tests that prove a restore refuses the edit.
import { createHash } from 'node:crypto';

/** The backup with its trailer's SHA-256 recomputed (what an attacker with write access to the file would do). */
export function rehash(text: string): string {
  const lines = text.slice(0, -1).split('\n');
  const content = lines.slice(0, -1).map((l) => `${l}\n`).join('');
  const end = JSON.parse(lines[lines.length - 1]!) as { end: { sha256: string } };
  end.end.sha256 = createHash('sha256').update(content, 'utf8').digest('hex');
  return `${content}${JSON.stringify(end)}\n`;
}
