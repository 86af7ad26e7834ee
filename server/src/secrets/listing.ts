/**
 * Folder listings filtered by the caller's policy, with one rule for every
 * name shown: a name under the listed folder appears only when the caller may
 * `list` it AND every folder between the listed folder and it. So a recursive
 * listing shows exactly what walking the folders one by one would, and a
 * folder appears only when something in it would: a folder the caller may not
 * list, or one that holds nothing the caller may see, is not named at all.
 *
 * The listed folder itself is authorised by the route (`list` on it). Pages
 * stay full while more visible names exist (see pagination.ts); a denied
 * folder is skipped in one step, not row by row.
 */
import type { SecretsRepo } from '../storage/repos/secrets.js';
import { collectVisible, takePage, type PageRequest, type Verdict } from './pagination.js';

/** May the caller `list` this path (a secret, or a folder ending in "/") of the namespace? */
export type MayList = (path: string) => boolean;

/** How many paths of a sub-folder come with its name; only when none of them is visible is the folder read further. */
const SAMPLE = 8;
const DEEP_SCAN_BATCH = 256;

/** The queries a listing makes. */
export type ListingRepo = Pick<SecretsRepo, 'pathsUnder' | 'folderEntries'>;

export async function listFolder(
  db: ListingRepo,
  namespaceId: string,
  folder: string,
  page: PageRequest,
  recursive: boolean,
  mayList: MayList,
): Promise<{ keys: string[]; next_cursor: string | null }> {
  const visible = (path: string): Verdict => {
    const hidden = hiddenFolder(folder, path, mayList);
    return hidden !== null ? pastFolder(hidden) : mayList(path);
  };
  if (recursive) {
    const rows = await collectVisible(pathsUnder(db, namespaceId, folder), folder + page.after, page.limit + 1, (r) => r.path, (r) => visible(r.path));
    const { items, next_cursor } = takePage(rows, page.limit, (r) => r.path.slice(folder.length));
    return { keys: items.map((r) => r.path.slice(folder.length)), next_cursor };
  }
  const judge = async (entry: Entry): Promise<boolean> => {
    const path = folder + entry.key;
    if (!entry.key.endsWith('/')) return mayList(path);
    if (!mayList(path)) return false;
    if (entry.sample.some((p) => visible(p) === true)) return true;
    if (!entry.more) return false;
    // Only the first paths came with the name and none is visible: look further for one that is.
    const after = entry.sample[entry.sample.length - 1]!;
    const found = await collectVisible(pathsUnder(db, namespaceId, path), after, 1, (r) => r.path, (r) => visible(r.path), DEEP_SCAN_BATCH);
    return found.length > 0;
  };
  const rows = await collectVisible(entriesOf(db, namespaceId, folder), page.after, page.limit + 1, (e) => e.key, judge);
  const { items, next_cursor } = takePage(rows, page.limit, (e) => e.key);
  return { keys: items.map((e) => e.key), next_cursor };
}

/** Would a listing of `folder` (recursive) show the secret at `path` to this caller? The rule above, for one path. */
export function listedUnder(folder: string, path: string, mayList: MayList): boolean {
  return hiddenFolder(folder, path, mayList) === null && mayList(path);
}

/** The first folder strictly below `folder` on the way to `path` that the caller may not list, or null. */
function hiddenFolder(folder: string, path: string, mayList: MayList): string | null {
  for (let i = path.indexOf('/', folder.length); i !== -1; i = path.indexOf('/', i + 1)) {
    const sub = path.slice(0, i + 1);
    if (!mayList(sub)) return sub;
  }
  return null;
}

/** A key past every path under `prefix` (ending in "/"): path characters all sort below "~". */
const pastFolder = (prefix: string) => `${prefix}~`;

/** Secret paths under `prefix`, in order. */
function pathsUnder(db: ListingRepo, namespaceId: string, prefix: string) {
  return (after: string, n: number) => db.pathsUnder(namespaceId, prefix, after, n);
}

/** A name directly in the listed folder: a secret, or a sub-folder ("name/") with its first paths. */
interface Entry {
  key: string;
  sample: string[];
  more: boolean;
}

function entriesOf(db: ListingRepo, namespaceId: string, folder: string) {
  return async (after: string, n: number): Promise<Entry[]> => {
    const rows = await db.folderEntries(namespaceId, folder, after, n, SAMPLE);
    return rows.map((r) => ({ key: r.key, sample: r.sample, more: r.total > SAMPLE }));
  };
}
