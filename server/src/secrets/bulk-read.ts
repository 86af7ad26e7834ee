/**
 * The bulk read: a folder's latest versions, decrypted, as one JSON body (SecretService.bulkRead).
 */
import type { Keyring, EncryptedValue } from '../keyring/keyring.js';
import type { Repos } from '../storage/repos/index.js';
import { CofferError, notFound } from '../errors.js';
import { checkFolder } from './names.js';
import type { NamespaceService } from './namespace-service.js';
import { collectVisible, takePage, type PageRequest } from './pagination.js';
import { listedUnder, type MayList } from './listing.js';
import type { CachedFolderRow, SecretReadCache } from './read-cache.js';
import { namespaceHead, versionJson } from './version-json.js';

export interface BulkReadDeps {
  namespaces: Pick<NamespaceService, 'resolve'>;
  secrets: Pick<Repos['secrets'], 'currentVersionsPage'>;
  keyring: Pick<Keyring, 'decryptValues'>;
  cache: SecretReadCache;
}

/** The caller's verdicts: `read` per path, and what it may list (listing.ts). */
export interface BulkAccess {
  mayRead: (path: string) => boolean;
  mayList: MayList;
}

const COMMA = Buffer.from(',');

/** A folder row's stored envelope, for `decryptValues`; a destroyed one is not found. */
function stored(row: CachedFolderRow): { secretId: string; version: number } & EncryptedValue {
  if (!row.wrapped_dek || !row.ciphertext || row.kek_version === null) {
    throw new CofferError('not_found', `version ${row.version} of secret "${row.path}" was destroyed`);
  }
  return { secretId: row.secret_id, version: row.version, kekVersion: row.kek_version, wrappedDek: row.wrapped_dek, ciphertext: row.ciphertext };
}

/**
 * The latest version of every secret under a folder, decrypted, in path
 * order — what a pipeline injects. Secrets the caller may `read` are
 * returned; those it may only list (listing.ts's rule) are named in
 * `withheld`, so a partial set is never mistaken for the whole; the rest are
 * not named. Deleted and destroyed latest versions are skipped. Nothing
 * visible at all under the folder is a 404: a misspelt folder is not empty.
 *
 * Returns the BulkPage as the UTF-8 JSON text `JSON.stringify` makes of it,
 * built from one fragment per secret: a value's plaintext is the JSON text
 * `write` made of its data, so it goes into its fragment as it is, without a
 * parse and a second stringify. A fragment is kept with its cached folder page
 * (read-cache.ts says under which rules), so a repeated bulk read opens no
 * envelope. It cannot leave before the request's audit entry is durable, so
 * the text is one body, not a stream; the caller zeroes it once sent.
 */
export async function bulkRead(d: BulkReadDeps, namespace: string, folder: string, page: PageRequest, access: BulkAccess): Promise<Buffer> {
  checkFolder(folder);
  const ns = await d.namespaces.resolve(namespace);
  const fetch = (after: string, n: number) => folderPage(d, namespace, ns.id, folder, after, n);
  // Filtered before the page is cut, so a page is full while visible secrets remain and the
  // cursor is always a path the caller was given (as a secret or a withheld name).
  // Each path's `read` verdict is taken once, while judging its visibility.
  const mayRead = new Set<CachedFolderRow>();
  const rows = await collectVisible(fetch, page.after, page.limit + 1, (r) => r.path, (r) => {
    if (!access.mayRead(r.path)) return listedUnder(folder, r.path, access.mayList);
    mayRead.add(r);
    return true;
  });
  const { items, next_cursor } = takePage(rows, page.limit, (r) => r.path);
  if (items.length === 0 && page.after === '') throw notFound(`no secrets under ${namespace}:${folder || '/'}`);
  const readable: typeof items = [];
  const withheld: string[] = [];
  for (const row of items) {
    if (mayRead.has(row)) readable.push(row);
    else withheld.push(row.path);
  }
  const cache = d.cache;
  // Fragments this request decrypted, by index into `readable`. A cached fragment may be
  // zeroed by a change during an await, so cached ones are only taken in the synchronous
  // pass that builds the body; a row whose fragment went meanwhile is decrypted on the next
  // round (each round decrypts at least one more row, so this ends).
  const fresh = new Map<number, Buffer>();
  try {
    for (;;) {
      const missing: number[] = [];
      readable.forEach((row, i) => {
        if (!fresh.has(i) && !cache.getValue(row)) missing.push(i);
      });
      if (missing.length === 0) break;
      const head = namespaceHead(namespace);
      await d.keyring.decryptValues(ns.id, missing.map((i) => stored(readable[i]!)), (plaintext, j) => {
        const row = readable[missing[j]!]!;
        fresh.set(missing[j]!, versionJson(head, row.path, row, plaintext));
      });
    }
    const parts: Uint8Array[] = [Buffer.from(`{"namespace":${JSON.stringify(namespace)},"folder":${JSON.stringify(folder)},"secrets":[`)];
    readable.forEach((row, i) => {
      if (i > 0) parts.push(COMMA);
      parts.push(fresh.get(i) ?? cache.getValue(row)!);
    });
    parts.push(Buffer.from(`],"withheld":${JSON.stringify(withheld)},"next_cursor":${JSON.stringify(next_cursor)}}`));
    return Buffer.concat(parts);
  } finally {
    // The cache takes each fresh fragment over (keeps or zeroes it).
    for (const [i, value] of fresh) cache.setValue(readable[i]!, value);
  }
}

/** One query's rows of a bulk read: from the read cache, or the database (then cached, as the single read does). */
async function folderPage(d: BulkReadDeps, namespace: string, namespaceId: string, folder: string, after: string, n: number): Promise<readonly CachedFolderRow[]> {
  const cache = d.cache;
  const query = `${namespaceId}\u0000${folder}\u0000${after}\u0000${n}`;
  const cached = cache.getPage(namespace, query);
  if (cached) return cached;
  const generation = cache.generation;
  const rows = await d.secrets.currentVersionsPage(namespaceId, folder, after, n);
  cache.setPage(namespace, query, rows, generation);
  return rows;
}
