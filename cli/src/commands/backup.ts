/**
 * `coffer operator backup [--out FILE]`, `coffer operator backup verify FILE`,
 * `coffer operator restore FILE`. A backup holds every key of the vault, still
 * wrapped by the root key: written 0600, never over an existing file unless
 * --force, and only once complete (a cut stream leaves nothing behind).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BackupChecker, BackupFormatError, tableRows, type BackupVerifyResult, type ParsedBackup, type Sha256Hex } from '@coffer/sdk/api';
import type { Command } from 'commander';
import { Context } from '../context.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { readShares } from '../input.js';
import { fields } from '../output.js';
import { examples } from './common.js';

const sha256Hex: Sha256Hex = (...parts) => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
};

/** The file checked line by line as it is read (BackupChecker): only the proofs' rows stay in memory. */
async function checkBackupFile(file: string): Promise<ParsedBackup> {
  const hash = createHash('sha256');
  const checker = new BackupChecker(sha256Hex, { update: (part) => void hash.update(part, 'utf8'), hex: () => hash.digest('hex') });
  let rest = '';
  try {
    for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1024 * 1024 })) {
      const lines = (rest + (chunk as string)).split('\n');
      rest = lines.pop()!;
      for (const line of lines) checker.line(line);
    }
  } catch (err) {
    if (err instanceof BackupFormatError) throw new CliError(`${file} is not a sound Coffer backup: ${err.message}`);
    throw new CliError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  try {
    return checker.finish(rest);
  } catch (err) {
    if (err instanceof BackupFormatError) throw new CliError(`${file} is not a sound Coffer backup: ${err.message}`);
    throw err;
  }
}

function summary(file: string, b: ParsedBackup): string {
  const rows = Object.values(b.trailer.counts).reduce((a, n) => a + n, 0);
  return fields([
    ['File', file],
    ['Format', b.header.format],
    ['Created', b.header.created_at],
    ['Schema', b.header.schema],
    ['Seal', `${b.header.seal.type}, root key version ${b.header.seal.root_version}, ${b.header.seal.threshold} of ${b.header.seal.shares} shares`],
    ['Tables', b.header.tables.length],
    ['Rows', rows],
    ['Keys (fingerprints)', Object.keys(b.trailer.fingerprints).length],
    ['SHA-256', b.trailer.sha256],
  ]);
}

/** The server package's offline check (vault/backup-shares.ts): one implementation of the key checks, not a copy. */
interface OfflineVerifier {
  verifyBackupWithShares(backup: ParsedBackup, shares: readonly string[], rows?: (table: string) => AsyncIterable<Record<string, unknown>>): Promise<BackupVerifyResult>;
}

/** The file's lines again, without their "\n" (it was checked whole by checkBackupFile). */
async function* fileLines(file: string): AsyncGenerator<string> {
  let rest = '';
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1024 * 1024 })) {
    const lines = (rest + (chunk as string)).split('\n');
    rest = lines.pop()!;
    yield* lines;
  }
}
// A variable, so the CLI neither type-checks against nor has to ship the server package.
const OFFLINE_VERIFIER = '@coffer/server/vault/backup-shares';

async function verifyOffline(file: string, backup: ParsedBackup, shares: string[]): Promise<BackupVerifyResult> {
  let verifier: OfflineVerifier;
  try {
    verifier = (await import(OFFLINE_VERIFIER)) as OfflineVerifier;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new CliError('proving a backup with shares offline needs the Coffer server package (@coffer/server) installed beside the CLI; or prove it with --server');
  }
  try {
    // The value tables are read from the file again, one pass each, instead of held in memory.
    return await verifier.verifyBackupWithShares(backup, shares, (table) => tableRows(fileLines(file), table));
  } catch (err) {
    // The server's CofferError (code, message): its messages never quote a share.
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && err instanceof Error) throw new CliError(`${err.message} (${code})`);
    throw err;
  }
}

function renderVerify(r: BackupVerifyResult, under = 'the server\'s root key'): string {
  return fields([
    [`Opens under ${under}`, r.ok],
    ['Root check', r.root_check],
    ['Sealed digest', r.digest],
    ['Root-wrapped keys', `${r.root_wrapped.opened} opened, ${r.root_wrapped.failed} failed`],
    ['KEK-wrapped keys', `${r.kek_wrapped.opened} opened, ${r.kek_wrapped.failed} failed`],
    ['Secret values', `${r.values.opened} decrypted, ${r.values.failed} failed`],
    ['Failures', r.failures.length > 0 ? r.failures.join(', ') : null],
  ]);
}

/** Streams the response body to `out` (mode 0600), with a progress line on a terminal. */
async function download(body: ReadableStream<Uint8Array>, out: string): Promise<number> {
  const file = await open(out, 'wx', 0o600);
  const tty = process.stderr.isTTY === true;
  let bytes = 0;
  let table = '';
  let shown = 0;
  try {
    for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
      await file.write(chunk);
      bytes += chunk.length;
      if (tty) {
        const m = /\{"table":"([a-z_]+)"\}\n(?![\s\S]*\{"table":")/.exec(Buffer.from(chunk).toString('utf8'));
        if (m) table = m[1]!;
        if (Date.now() - shown > 200) {
          shown = Date.now();
          process.stderr.write(`\r\x1b[Kbackup: ${(bytes / 1024 / 1024).toFixed(1)} MiB${table ? `, table ${table}` : ''}`);
        }
      }
    }
    await file.sync();
  } finally {
    await file.close();
    if (tty) process.stderr.write('\r\x1b[K');
  }
  return bytes;
}

export function registerBackup(operator: Command): void {
  const backup = examples(
    operator
      .command('backup')
      .description('write a backup of everything the server stores (admin): keys stay wrapped by the root key; file mode 0600')
      .option('--out <file>', 'where to write the backup (required)')
      .option('--force', 'replace FILE if it exists (only once the new backup is complete)')
      .action(async (opts: { out?: string; force?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        // Not a requiredOption: commander would demand it of `backup verify` too.
        if (!opts.out) throw usageError('give the file to write: --out FILE');
        const out = opts.out;
        if (!opts.force) {
          const exists = await open(out, 'r').then(
            async (f) => (await f.close(), true),
            () => false,
          );
          if (exists) throw new CliError(`${out} exists: choose another file or pass --force`);
        }
        const response = await ctx.client({ auth: true }).sys.backup();
        if (!response.body) throw new CliError('the server sent no backup');
        // Written beside the target and renamed when complete and checked: a cut stream never replaces a good backup.
        const partial = `${out}.partial`;
        try {
          await download(response.body, partial);
        } catch (err) {
          await unlink(partial).catch(() => undefined);
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new CliError(`${partial} exists (another backup running?): remove it first`);
          throw new CliError(`the backup was cut off (${err instanceof Error ? err.message : 'stream failed'}); nothing was written`, EXIT.unavailable);
        }
        let parsed: ParsedBackup;
        try {
          parsed = await checkBackupFile(partial);
        } catch (err) {
          await unlink(partial).catch(() => undefined);
          throw err;
        }
        await rename(partial, out);
        ctx.print({ file: out, header: parsed.header, counts: parsed.trailer.counts, sha256: parsed.trailer.sha256 }, () => summary(out, parsed));
      }),
    'coffer operator backup --out coffer-$(date +%F).backup',
    'coffer operator backup verify coffer-2026-01-01.backup --server',
  );

  examples(
    backup
      .command('verify')
      .description(
        'check a backup file offline (structure, counts, fingerprints, SHA-256). With --shares or --shares-file (Shamir), also prove offline, with the ORIGINAL ' +
          'unseal shares, that the sealed digest and every wrapped key and value open; with --server, prove it on the running, unsealed server (admin)',
      )
      .argument('<file>', 'the backup file')
      .option('--server', 'upload it to the server (COFFER_ADDR) to prove that every wrapped key and value opens; nothing is stored')
      .option('--shares', 'prove it offline with the original unseal shares, prompted for on a terminal (else read from stdin)')
      .option('--shares-file <file>', 'prove it offline with the original unseal shares in FILE, one per line ("-" for stdin)')
      .action(async (file: string, opts: { server?: boolean; shares?: boolean; sharesFile?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        // Checked as it is read; a proof reads it again or streams it to the server: never whole in memory.
        const parsed = await checkBackupFile(file);
        const withShares = opts.shares === true || opts.sharesFile !== undefined;
        if (withShares && opts.server) throw usageError('give --server or the shares (--shares, --shares-file), not both');
        if (!opts.server && !withShares) {
          ctx.print({ ok: true, header: parsed.header, counts: parsed.trailer.counts, sha256: parsed.trailer.sha256 }, () => `${summary(file, parsed)}Structure, counts, fingerprints and SHA-256: OK\n`);
          return;
        }
        let result: BackupVerifyResult;
        if (withShares) {
          if (parsed.header.seal.type === 'pkcs11') throw usageError('a PKCS#11 backup\'s root key is in its HSM, not in shares: prove it with --server');
          const shares = await readShares(opts.sharesFile, parsed.header.seal.threshold, 'Original unseal share');
          result = await verifyOffline(file, parsed, shares);
        } else result = await ctx.client({ auth: true }).sys.verifyBackup(Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>);
        ctx.print(result, () => summary(file, parsed) + renderVerify(result, withShares ? 'the shares\' root key' : 'the server\'s root key'));
        if (!result.ok) process.exitCode = EXIT.error;
      }),
    'coffer operator backup verify coffer.backup',
    'coffer operator backup verify coffer.backup --shares-file shares.txt',
    'coffer operator backup verify coffer.backup --server',
  );

  examples(
    operator
      .command('restore')
      .description(
        'restore a backup into a new, UNINITIALISED server (same seal type and Coffer version). A Shamir backup needs the threshold of its ORIGINAL unseal shares ' +
          '(prompted for on a terminal, else --shares-file or stdin): they prove the backup is unedited before anything is written, and unseal the server afterwards. ' +
          'A PKCS#11 backup needs the HSM holding the original root key',
      )
      .argument('<file>', 'the backup file')
      .option('--shares-file <file>', 'the original unseal shares, one per line ("-" for stdin)')
      .action(async (file: string, opts: { sharesFile?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        // Checked as it is read, then streamed from disk: a backup of any size, never whole in memory.
        const parsed = await checkBackupFile(file);
        const seal = parsed.header.seal;
        // The HSM holds a PKCS#11 backup's root key; a Shamir one is rebuilt from the shares.
        const needsShares = seal.type !== 'pkcs11';
        if (!needsShares && opts.sharesFile !== undefined) throw usageError('a PKCS#11 backup is restored with the HSM key: give no --shares-file');
        const client = ctx.client({ auth: false });
        // Asked first so nobody types shares for a restore that cannot happen (the server checks again).
        if ((await client.sys.status()).initialized) throw new CliError('Coffer is already initialised: restore only into a new, uninitialised server');
        const shares = needsShares ? await readShares(opts.sharesFile, seal.threshold, 'Original unseal share') : undefined;
        const result = await client.sys.restore(Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>, { shares });
        ctx.print(result, () =>
          fields([
            ['Restored rows', Object.values(result.restored).reduce((a, n) => a + n, 0)],
            ['Seal type', result.seal_type],
            ['Root key version', result.root_version],
            ['Sealed', result.sealed],
          ]) +
          (result.sealed
            ? `\nUnseal with the original ${result.seal_type === 'pkcs11' ? 'HSM key (automatic at start) or recovery shares' : 'unseal shares'}: \`coffer operator unseal\`.\n`
            : '\nThe backup\'s sealed digest was proven with the original root key, which now unseals the server.\n'),
        );
      }),
    'coffer operator restore coffer.backup                 # prompts for the original unseal shares',
    'coffer operator restore coffer.backup --shares-file shares.txt',
  );
}
