/**
 * The backup format (`GET /v1/sys/backup`, `coffer operator backup`): UTF-8
 * JSON lines, every line ending in "\n", in this order:
 *
 *   {"coffer_backup": BackupHeader}            the first half of the manifest
 *   {"table": "<name>"}                         one section per table, in header.tables order
 *   {"r": <row>}                                one line per row: PostgreSQL's to_jsonb(row)
 *   ...                                          (bytea as "\\x<hex>", timestamps with microseconds)
 *   {"end": BackupTrailer}                      counts, fingerprints, SHA-256, sealed digest
 *
 * Everything is stored as the database holds it: keys stay wrapped by the root
 * key (KEKs, system keys) or by a KEK (DEKs, named keys), values stay encrypted.
 * `sha256` covers every byte before the trailer line; `digest_seal` is that
 * digest wrapped by the root key (AEAD): only a holder of the root key can make
 * one that opens, so an edited backup is caught by `backup verify --server`
 * even when its SHA-256 was recomputed. Restore proves it too, before it writes
 * anything: with the original unseal shares (Shamir: see RestoreEnvelope) or
 * the HSM's root key (PKCS#11).
 *
 * Checked here without any key (offline `coffer operator backup verify`). The
 * wire contract imports nothing: callers pass SHA-256 (node:crypto on Node).
 */

/** SHA-256 of the parts, concatenated (strings as UTF-8), as lowercase hex. */
export type Sha256Hex = (...parts: Array<string | Uint8Array>) => string;

export const BACKUP_FORMAT = 1;
export const BACKUP_MEDIA_TYPE = 'application/x-ndjson';

/** A root-wrapped column, as the server's registry names it (for fingerprints). */
export interface BackupWrappedColumn {
  table: string;
  key: string[];
  column: string;
}

export interface BackupHeader {
  format: number;
  created_at: string;
  /** The last schema migration of the server that made it: restore needs the same schema. */
  schema: string;
  seal: { type: string; root_version: number; shares: number; threshold: number; hsm_key_label: string | null };
  /** Every table, in the order they are written (and restored: parents before children). */
  tables: string[];
  /** What the root key wraps: the rows fingerprinted in the trailer. */
  root_wrapped: BackupWrappedColumn[];
}

export interface BackupTrailer {
  counts: Record<string, number>;
  /** SHA-256 (first 16 bytes, hex) of each stored wrapped key and of the root check value: identifies keys, reveals nothing. */
  fingerprints: Record<string, string>;
  sha256: string;
  /** The content's SHA-256 wrapped by the root key (base64). */
  digest_seal: string;
}

/** A parsed backup; rows are kept as their JSON text (parsed on demand). */
export interface ParsedBackup {
  header: BackupHeader;
  trailer: BackupTrailer;
  /** table → the row lines' JSON texts (the `<row>` of `{"r": <row>}`). */
  rows: Map<string, string[]>;
}

/** A backup that is not well formed; the message says where. */
export class BackupFormatError extends Error {
  constructor(
    message: string,
    /** The format is newer than this reader knows (refused, not "corrupt"). */
    readonly unsupported = false,
  ) {
    super(message);
    this.name = 'BackupFormatError';
  }
}

/** The fingerprint of stored bytes (a wrapped key): not the key, and not reversible. */
export function fingerprint(bytes: Uint8Array, sha256: Sha256Hex): string {
  return sha256('coffer backup fingerprint v1\0', bytes).slice(0, 32);
}

/** PostgreSQL's JSON form of bytea ("\\x0a0b…") back to bytes. */
export function byteaOf(value: unknown): Uint8Array | null {
  if (typeof value !== 'string' || !/^\\x([0-9a-f]{2})*$/i.test(value)) return null;
  const out = new Uint8Array((value.length - 2) / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(value.slice(2 + 2 * i, 4 + 2 * i), 16);
  return out;
}

/** What the trailer's fingerprints are computed from: the root check value and every root-wrapped row. */
export function fingerprintsOf(header: BackupHeader, rows: ReadonlyMap<string, readonly string[]>, sha256: Sha256Hex): Record<string, string> {
  const out: Record<string, string> = {};
  for (const text of rows.get('seal_config') ?? []) {
    const check = byteaOf((JSON.parse(text) as Record<string, unknown>).root_check);
    if (check) out.root_check = fingerprint(check, sha256);
  }
  for (const entry of header.root_wrapped) {
    for (const text of rows.get(entry.table) ?? []) {
      const row = JSON.parse(text) as Record<string, unknown>;
      const bytes = byteaOf(row[entry.column]);
      if (bytes) out[[entry.table, ...entry.key.map((k) => String(row[k]))].join('/')] = fingerprint(bytes, sha256);
    }
  }
  return out;
}

const object = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseLine(line: string, at: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new BackupFormatError(`line ${at}: not JSON`);
  }
  if (!object(value)) throw new BackupFormatError(`line ${at}: not a JSON object`);
  return value;
}

function checkHeader(value: unknown): BackupHeader {
  if (!object(value)) throw new BackupFormatError('line 1: not a Coffer backup (no "coffer_backup" header)');
  const format = value.format;
  if (typeof format !== 'number' || !Number.isInteger(format)) throw new BackupFormatError('the header has no format version');
  if (format > BACKUP_FORMAT) {
    throw new BackupFormatError(`backup format ${format} is newer than this Coffer understands (${BACKUP_FORMAT}): use a newer Coffer`, true);
  }
  const seal = value.seal;
  const ok =
    typeof value.created_at === 'string' &&
    typeof value.schema === 'string' &&
    object(seal) &&
    typeof seal.type === 'string' &&
    typeof seal.root_version === 'number' &&
    Array.isArray(value.tables) &&
    value.tables.every((t) => typeof t === 'string') &&
    Array.isArray(value.root_wrapped);
  if (!ok) throw new BackupFormatError('the header is incomplete (created_at, schema, seal, tables, root_wrapped)');
  // Names that end up in messages and SQL identifiers: plain ones only.
  const names =
    /^[a-z0-9-]{1,32}$/.test(seal.type as string) &&
    /^[A-Za-z0-9_.-]{0,128}$/.test(value.schema as string) &&
    (value.tables as string[]).every((t) => /^[a-z_][a-z0-9_]{0,62}$/.test(t));
  if (!names) throw new BackupFormatError('the header names a seal type, schema or table that is not a plain name');
  return value as unknown as BackupHeader;
}

/** SHA-256 fed piece by piece (strings as UTF-8): `hex` once, at the end. */
export interface Sha256Stream {
  update(part: string): void;
  hex(): string;
}

/** The tables whose rows the trailer's fingerprints need (all a streaming reader keeps in memory). */
export function fingerprintedTables(header: BackupHeader): Set<string> {
  return new Set(['seal_config', ...header.root_wrapped.map((e) => e.table)]);
}

/**
 * Checks a backup line by line as it arrives, holding only what the proofs
 * need: the header, the trailer, the rows of the fingerprinted tables (all rows
 * with `keepAll`) and a count per table. `line` takes each line without its
 * "\n"; `finish` takes whatever followed the last "\n" (must be nothing) and
 * does the checks that need the whole: the trailer last, every section there,
 * counts, fingerprints and the SHA-256 of the content. Throws
 * BackupFormatError naming the first problem. Used by parseBackup, the CLI
 * and the server's restore, so all three accept exactly the same files.
 */
export class BackupChecker {
  private at = 0;
  private header: BackupHeader | null = null;
  private trailer: BackupTrailer | null = null;
  private keep = new Set<string>();
  private section = 0;
  private current: string[] | null = null;
  private currentCount = 0;
  private readonly rows = new Map<string, string[]>();
  readonly counts = new Map<string, number>();

  constructor(
    /** For the fingerprints. */
    private readonly sha256: Sha256Hex,
    /** Of the content: every line before the trailer. */
    private readonly hash: Sha256Stream,
    private readonly keepAll = false,
  ) {}

  /** The header, once its line was read. */
  get parsedHeader(): BackupHeader | null {
    return this.header;
  }

  line(line: string): void {
    const at = ++this.at;
    if (this.trailer) throw new BackupFormatError(`line ${at}: more after the trailer ("end" line)`);
    if (at === 1) {
      this.header = checkHeader(parseLine(line, 1).coffer_backup);
      this.keep = this.keepAll ? new Set(this.header.tables) : fingerprintedTables(this.header);
      this.hashLine(line);
      return;
    }
    const header = this.header!;
    if (line.startsWith('{"r":')) {
      if (this.section === 0) throw new BackupFormatError(`line ${at}: a row before any table section`);
      if (!line.endsWith('}')) throw new BackupFormatError(`line ${at}: malformed row`);
      const row = line.slice(5, -1);
      if (!object(parseLine(row, at))) throw new BackupFormatError(`line ${at}: malformed row`);
      this.current?.push(row);
      this.currentCount++;
      this.counts.set(header.tables[this.section - 1]!, this.currentCount);
      this.hashLine(line);
      return;
    }
    const value = parseLine(line, at);
    if (line.startsWith('{"end":')) {
      const end = value.end;
      if (!object(end) || !object(end.counts) || !object(end.fingerprints) || typeof end.sha256 !== 'string' || typeof end.digest_seal !== 'string') {
        throw new BackupFormatError('the backup is truncated or has no trailer ("end" line)');
      }
      this.trailer = end as unknown as BackupTrailer;
      return;
    }
    const table = value.table;
    if (typeof table !== 'string' || table !== header.tables[this.section]) throw new BackupFormatError(`line ${at}: expected the section of table ${header.tables[this.section] ?? '(none)'}`);
    this.current = this.keep.has(table) ? [] : null;
    if (this.current) this.rows.set(table, this.current);
    this.currentCount = 0;
    this.counts.set(table, 0);
    this.section++;
    this.hashLine(line);
  }

  private hashLine(line: string): void {
    this.hash.update(line);
    this.hash.update('\n');
  }

  /** The checked backup; `rows` holds the kept tables only. */
  finish(rest: string): ParsedBackup {
    if (rest !== '') throw new BackupFormatError('the backup is truncated (no final newline)');
    const { header, trailer } = this;
    if (!header) throw new BackupFormatError('the backup is truncated (no final newline)');
    if (!trailer) throw new BackupFormatError('the backup is truncated or has no trailer ("end" line)');
    if (this.hash.hex() !== trailer.sha256) throw new BackupFormatError('the SHA-256 of the content does not match the trailer: the backup was altered or damaged');
    if (this.section !== header.tables.length) throw new BackupFormatError(`sections missing: ${header.tables.slice(this.section).join(', ')}`);
    for (const table of header.tables) {
      const n = this.counts.get(table)!;
      if (trailer.counts[table] !== n) throw new BackupFormatError(`table ${table}: ${n} rows, the manifest says ${String(trailer.counts[table])}`);
    }
    if (Object.keys(trailer.counts).length !== header.tables.length) throw new BackupFormatError('the manifest counts tables that are not in the backup');
    const expected = fingerprintsOf(header, this.rows, this.sha256);
    const keys = new Set([...Object.keys(expected), ...Object.keys(trailer.fingerprints)]);
    for (const k of keys) if (expected[k] !== trailer.fingerprints[k]) throw new BackupFormatError(`fingerprint of ${k} does not match the manifest`);
    return { header, trailer, rows: this.rows };
  }
}

/**
 * The rows of `table`, parsed, from the lines (without their "\n") of a backup that a
 * BackupChecker already accepted: how a reader that keeps only the fingerprinted tables in
 * memory (a spooled upload, a file on disk) reads the others again, one table per pass.
 */
export async function* tableRows(lines: AsyncIterable<string>, table: string): AsyncGenerator<Record<string, unknown>> {
  let inside = false;
  for await (const line of lines) {
    if (line.startsWith('{"r":')) {
      if (inside) yield JSON.parse(line.slice(5, -1)) as Record<string, unknown>;
    } else if (line.startsWith('{"table":')) {
      const at = (JSON.parse(line) as { table: string }).table === table;
      // Each table has one section: past it, nothing more of it follows.
      if (inside && !at) return;
      inside = at;
    }
  }
}

/**
 * Parses and checks a whole backup held in memory (BackupChecker over its
 * lines, every row kept).
 */
export function parseBackup(text: string, sha256: Sha256Hex): ParsedBackup {
  // The content hashed is a prefix of `text`: count it instead of copying it.
  let length = 0;
  const hash: Sha256Stream = { update: (part) => void (length += part.length), hex: () => sha256(text.slice(0, length)) };
  const checker = new BackupChecker(sha256, hash, true);
  let from = 0;
  for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
    checker.line(text.slice(from, nl));
    from = nl + 1;
  }
  return checker.finish(text.slice(from));
}

/** What `POST /v1/sys/backup/verify` answers: counts only, never a key. */
export interface BackupVerifyResult {
  ok: boolean;
  root_check: boolean;
  /** The sealed digest opened under the server's root key and matches the content. */
  digest: boolean;
  root_wrapped: { opened: number; failed: number };
  kek_wrapped: { opened: number; failed: number };
  /** Secret values decrypted with their DEKs (and thrown away). */
  values: { opened: number; failed: number };
  /** The first failures, by table and key (at most 20). */
  failures: string[];
}

/**
 * `POST /v1/sys/restore` takes the backup file as sent (application/x-ndjson),
 * optionally preceded by ONE line of this shape:
 *
 *   {"coffer_restore": {"shares": ["<share>", ...]}}
 *
 * A Shamir backup needs it, with the threshold of ORIGINAL unseal shares: they
 * rebuild the root key that proves the backup's sealed digest (an edited backup
 * whose SHA-256 was recomputed is refused). A PKCS#11 backup takes no shares:
 * the HSM holds the root key. The shares travel in the body only (never the
 * URL), and the server neither stores, logs nor audits them.
 */
export interface RestoreEnvelope {
  coffer_restore: { shares: string[] };
}

/** The body of a restore: the envelope line (when there are shares), then the backup unchanged. */
export function restoreUpload(backup: string, shares?: readonly string[]): string {
  return `${restoreEnvelopeLine(shares)}${backup}`;
}

/** The envelope line, "\n" included, that goes before a streamed backup ('' without shares). */
export function restoreEnvelopeLine(shares?: readonly string[]): string {
  if (!shares || shares.length === 0) return '';
  const envelope: RestoreEnvelope = { coffer_restore: { shares: [...shares] } };
  return `${JSON.stringify(envelope)}\n`;
}

export interface RestoreResult {
  restored: Record<string, number>;
  seal_type: string;
  root_version: number;
  /**
   * False when the server unsealed with the root key the restore proved (the
   * shares it was given, or the HSM key); true when unsealing afterwards failed
   * (unseal as usual: the restore itself is committed).
   */
  sealed: boolean;
}
