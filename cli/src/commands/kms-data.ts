/**
 * `coffer kms encrypt|decrypt|rewrap|sign|verify|hmac|datakey|public-key|random`
 * and `coffer kms encrypt-file|decrypt-file`. Data comes from stdin or --in FILE
 * and goes to stdout or --out FILE, never through arguments (shell history, ps);
 * files this writes are created 0600. Bytes are passed exactly: `echo` adds a
 * newline that decrypt gives back (use printf %s).
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KMS_MAX_PLAINTEXT_BYTES, type FileProgress, type KmsHashAlgorithm, type KmsMarshaling, type KmsSignatureAlgorithm, type SignOptions } from '@coffer/sdk';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { promptHidden } from '../input.js';
import { fields } from '../output.js';
import { examples, integer } from './common.js';

interface IoOpts {
  in?: string;
  out?: string;
}

/** The whole input: --in FILE, else stdin (prompted for without echo on a terminal when `prompt`). */
async function readInput(opts: IoOpts, prompt?: string): Promise<Buffer> {
  if (opts.in !== undefined && opts.in !== '-') {
    try {
      return await readFile(opts.in);
    } catch (err) {
      throw new CliError(`cannot read --in ${opts.in} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
  }
  if (process.stdin.isTTY) {
    if (prompt) return Buffer.from(await promptHidden(prompt), 'utf8');
    process.stderr.write('Reading from the terminal; end with Ctrl-D (or use --in FILE)\n');
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A KMS value (ciphertext, signature) read as text: surrounding whitespace is not part of it. */
async function readValue(opts: IoOpts, what: string): Promise<string> {
  const text = (await readInput(opts)).toString('utf8').trim();
  if (!text) throw usageError(`no ${what} given on stdin or --in`);
  return text;
}

/** To --out FILE (0600), else stdout. */
async function writeOutput(opts: IoOpts, data: Buffer | string): Promise<void> {
  if (opts.out !== undefined && opts.out !== '-') {
    try {
      await writeFile(opts.out, data, { mode: 0o600 });
    } catch (err) {
      throw new CliError(`cannot write --out ${opts.out} (${(err as NodeJS.ErrnoException).code ?? 'unwritable'})`);
    }
    return;
  }
  if (!process.stdout.write(data)) await once(process.stdout, 'drain');
}

const io = (cmd: Command) => cmd.option('--in <file>', 'read the input from FILE (default: stdin)').option('--out <file>', 'write the output to FILE, mode 0600 (default: stdout)');
const aad = (cmd: Command) => cmd.option('--aad <text>', 'associated data (not secret) bound to the ciphertext; decrypt needs the same');
const keyVersion = (cmd: Command) => cmd.option('--key-version <n>', 'use this key version (default: the latest allowed)', integer(1));

type SignCliOpts = IoOpts & { prehashed?: boolean; hash?: KmsHashAlgorithm; signatureAlgorithm?: KmsSignatureAlgorithm; marshaling?: KmsMarshaling; keyVersion?: number };
const signOptions = (cmd: Command) =>
  cmd
    .option('--prehashed', 'the input is a digest already (of --hash)')
    .addOption(new Option('--hash <algorithm>', 'hash algorithm').choices(['sha2-256', 'sha2-384', 'sha2-512']))
    .addOption(new Option('--signature-algorithm <name>', 'RSA padding').choices(['pss', 'pkcs1v15']))
    .addOption(new Option('--marshaling <name>', 'ECDSA signature encoding').choices(['asn1', 'jws']));
const signFields = (o: SignCliOpts): SignOptions => ({ prehashed: o.prehashed, hashAlgorithm: o.hash, signatureAlgorithm: o.signatureAlgorithm, marshaling: o.marshaling });

/** Progress on stderr, for inputs of 1 MiB or more when stderr is a terminal. */
function progressReporter(label: string): ((p: FileProgress) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  const mib = (n: number) => (n / 1048576).toFixed(1);
  return (p) => {
    if (p.total < 1048576) return;
    const now = Date.now();
    if (now - last < 200 && p.done < p.total) return;
    last = now;
    const pct = p.total ? Math.floor((100 * p.done) / p.total) : 100;
    const width = 30;
    const bar = '#'.repeat(Math.round((width * pct) / 100)).padEnd(width, '.');
    process.stderr.write(`\r${label} [${bar}] ${String(pct).padStart(3)}% ${mib(p.done)}/${mib(p.total)} MiB${p.done >= p.total ? '\n' : ''}`);
  };
}

export function registerKmsData(kms: Command): void {
  type EncryptOpts = IoOpts & { aad?: string; keyVersion?: number };
  examples(
    keyVersion(aad(io(kms.command('encrypt').description(`encrypt up to ${KMS_MAX_PLAINTEXT_BYTES / 1024} KiB with a named key; prints coffer:v<n>:<base64>`).argument('<key>')))).action(
      async (key: string, opts: EncryptOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const plaintext = await readInput(opts, 'Plaintext: ');
        if (plaintext.length > KMS_MAX_PLAINTEXT_BYTES) {
          throw usageError(`the input is ${plaintext.length} bytes; encrypt takes at most ${KMS_MAX_PLAINTEXT_BYTES}: use \`coffer kms encrypt-file\` (a data key) for larger data`);
        }
        const r = await ctx.client({ auth: true }).kms.encrypt(ctx.namespace(), key, plaintext, { associatedData: opts.aad, keyVersion: opts.keyVersion });
        await writeOutput(opts, ctx.globals.format === 'json' ? `${JSON.stringify(r)}\n` : `${r.ciphertext}\n`);
      },
    ),
    'printf %s "$CARD_NUMBER" | coffer -n app kms encrypt payments > card.enc',
    'coffer -n app kms encrypt payments --in token.txt --out token.enc --aad tenant=42',
  );

  examples(
    aad(io(kms.command('decrypt').description('decrypt a ciphertext (or a data key\'s wrapped form) read from stdin or --in; writes the plaintext bytes').argument('<key>'))).action(
      async (key: string, opts: IoOpts & { aad?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const ciphertext = await readValue(opts, 'ciphertext');
        const r = await ctx.client({ auth: true }).kms.decrypt(ctx.namespace(), key, ciphertext, { associatedData: opts.aad });
        await writeOutput(opts, r.plaintext);
      },
    ),
    'coffer -n app kms decrypt payments < card.enc',
    'coffer -n app kms decrypt payments --in token.enc --out token.txt --aad tenant=42',
  );

  examples(
    keyVersion(aad(io(kms.command('rewrap').description('re-encrypt a ciphertext under the latest key version, without the plaintext leaving the server').argument('<key>')))).action(
      async (key: string, opts: EncryptOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const ciphertext = await readValue(opts, 'ciphertext');
        const r = await ctx.client({ auth: true }).kms.rewrap(ctx.namespace(), key, ciphertext, { associatedData: opts.aad, keyVersion: opts.keyVersion });
        await writeOutput(opts, ctx.globals.format === 'json' ? `${JSON.stringify(r)}\n` : `${r.ciphertext}\n`);
      },
    ),
    'coffer -n app kms rewrap payments --in card.enc --out card.enc.new',
  );

  examples(
    keyVersion(signOptions(io(kms.command('sign').description('sign the input (or its digest with --prehashed); prints coffer:v<n>:<base64 signature>').argument('<key>')))).action(
      async (key: string, opts: SignCliOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const input = await readInput(opts);
        const r = await ctx.client({ auth: true }).kms.sign(ctx.namespace(), key, input, { ...signFields(opts), keyVersion: opts.keyVersion });
        await writeOutput(opts, ctx.globals.format === 'json' ? `${JSON.stringify(r)}\n` : `${r.signature}\n`);
      },
    ),
    'coffer -n app kms sign release-signing --in release.tar.gz --out release.sig',
    'sha256sum -b big.iso | cut -c1-64 | xxd -r -p | coffer -n app kms sign release-signing --prehashed --hash sha2-256',
  );

  type VerifyOpts = SignCliOpts & { signature?: string; signatureFile?: string; hmac?: string };
  examples(
    signOptions(
      io(
        kms
          .command('verify')
          .description('check a signature (--signature, --signature-file) or an HMAC (--hmac) of the input; prints valid or invalid, exit code 1 when invalid')
          .argument('<key>')
          .option('--signature <value>', 'the signature, coffer:v<n>:<base64>')
          .option('--signature-file <file>', 'read the signature from FILE')
          .option('--hmac <value>', 'an HMAC to check, coffer:v<n>:<base64>'),
      ),
    ).action(async (key: string, opts: VerifyOpts, cmd: Command) => {
      const ctx = Context.of(cmd);
      const given = [opts.signature, opts.signatureFile, opts.hmac].filter((v) => v !== undefined).length;
      if (given !== 1) throw usageError('give exactly one of --signature, --signature-file and --hmac');
      const signature = opts.signatureFile !== undefined ? await readValue({ in: opts.signatureFile }, 'signature') : opts.signature;
      const input = await readInput(opts);
      const client = ctx.client({ auth: true });
      const valid = opts.hmac !== undefined
        ? await client.kms.verifyHmac(ctx.namespace(), key, input, opts.hmac)
        : await client.kms.verify(ctx.namespace(), key, input, signature!, signFields(opts));
      await writeOutput({ out: opts.out }, ctx.globals.format === 'json' ? `${JSON.stringify({ valid })}\n` : `${valid ? 'valid' : 'invalid'}\n`);
      if (!valid) process.exitCode = 1;
    }),
    'coffer -n app kms verify release-signing --in release.tar.gz --signature-file release.sig',
    'printf %s "$BODY" | coffer -n app kms verify webhooks --hmac "$SIGNATURE_HEADER"',
  );

  examples(
    keyVersion(io(kms.command('hmac').description('HMAC of the input with an hmac-sha256/512 key; prints coffer:v<n>:<base64>').argument('<key>'))).action(
      async (key: string, opts: IoOpts & { keyVersion?: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const input = await readInput(opts);
        const r = await ctx.client({ auth: true }).kms.hmac(ctx.namespace(), key, input, { keyVersion: opts.keyVersion });
        await writeOutput(opts, ctx.globals.format === 'json' ? `${JSON.stringify(r)}\n` : `${r.hmac}\n`);
      },
    ),
    'printf %s "$BODY" | coffer -n app kms hmac webhooks',
  );

  type DataKeyOpts = { wrappedOnly?: boolean; bits: '128' | '256' | '512'; out?: string; wrappedOut?: string; aad?: string };
  examples(
    aad(
      kms
        .command('datakey')
        .description('a fresh data key wrapped by a named key: the wrapped form on stdout (or --wrapped-out), the key itself (raw bytes) to --out FILE')
        .argument('<key>')
        .addOption(new Option('--bits <n>', 'key size').choices(['128', '256', '512']).default('256'))
        .option('--wrapped-only', 'do not return the key itself (wrapped mode): decrypt it later')
        .option('--out <file>', 'write the plaintext data key (raw bytes) to FILE, mode 0600; without it, --format json shows it base64')
        .option('--wrapped-out <file>', 'write the wrapped key to FILE instead of stdout'),
    ).action(async (key: string, opts: DataKeyOpts, cmd: Command) => {
      const ctx = Context.of(cmd);
      if (opts.wrappedOnly && opts.out) throw usageError('--out takes the plaintext key, which --wrapped-only does not return');
      if (!opts.wrappedOnly && !opts.out && ctx.globals.format !== 'json') {
        throw usageError('give --out FILE for the plaintext data key (or --wrapped-only, or --format json to see it base64)');
      }
      const dk = await ctx.client({ auth: true }).kms.datakey(ctx.namespace(), key, { mode: opts.wrappedOnly ? 'wrapped' : 'plaintext', bits: Number(opts.bits) as 128 | 256 | 512, associatedData: opts.aad });
      if (opts.out && dk.plaintext) await writeOutput({ out: opts.out }, dk.plaintext);
      const shown = { ciphertext: dk.ciphertext, key_version: dk.key_version, ...(dk.plaintext && !opts.out ? { plaintext: dk.plaintext.toString('base64') } : {}) };
      await writeOutput({ out: opts.wrappedOut }, ctx.globals.format === 'json' ? `${JSON.stringify(shown, null, 2)}\n` : `${dk.ciphertext}\n`);
      dk.plaintext?.fill(0);
    }),
    'coffer -n app kms datakey payments --out data.key > data.key.wrapped',
    'coffer -n app kms datakey payments --wrapped-only --bits 512 --wrapped-out data.key.wrapped',
    'coffer -n app kms decrypt payments --in data.key.wrapped --out data.key',
  );

  examples(
    kms
      .command('public-key')
      .description('the public key of an asymmetric key (PEM; JWK with --format json)')
      .argument('<key>')
      .option('--version <n>', 'key version (default: the latest)', integer(1))
      .action(async (key: string, opts: { version?: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const pk = await ctx.client({ auth: true }).kms.publicKey(ctx.namespace(), key, { version: opts.version });
        ctx.print(pk, () => (pk.pem.endsWith('\n') ? pk.pem : `${pk.pem}\n`));
      }),
    'coffer -n app kms public-key release-signing > release-signing.pem',
  );

  examples(
    kms
      .command('random')
      .description('random bytes from the server (its CSPRNG or the HSM), base64 or hex')
      .option('--bytes <n>', 'how many', integer(1), 32)
      .addOption(new Option('--encoding <enc>', 'output encoding').choices(['base64', 'hex']).default('base64'))
      .action(async (opts: { bytes: number; encoding: 'base64' | 'hex' }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const bytes = await ctx.client({ auth: true }).kms.random(opts.bytes);
        ctx.print({ random: bytes.toString(opts.encoding) }, () => `${bytes.toString(opts.encoding)}\n`);
      }),
    'coffer kms random --bytes 64 --encoding hex',
  );

  examples(
    kms
      .command('encrypt-file')
      .description('encrypt a file of any size locally under a fresh data key (only the data key crosses the network); the output holds the wrapped key')
      .argument('<key>')
      .requiredOption('--in <file>', 'the file to encrypt (- for stdin)')
      .option('--out <file>', 'the envelope file (- for stdout; default: --in with .cfev added)')
      .action(async (key: string, opts: IoOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const out = opts.out ?? (opts.in === '-' ? undefined : `${opts.in}.cfev`);
        if (out === undefined) throw usageError('give --out FILE (or - for stdout) when reading stdin');
        const client = ctx.client({ auth: true });
        const namespace = ctx.namespace();
        if (opts.in === '-' || out === '-') {
          await streamThrough(opts.in!, out, (source) => client.kms.encryptStream(namespace, key, source));
          return;
        }
        const r = await client.kms.encryptFile(namespace, key, opts.in!, out, { onProgress: progressReporter('Encrypting') });
        ctx.print({ in: opts.in, out, bytes: r.bytesIn, envelope_bytes: r.bytesOut }, () => fields([['Encrypted', `${opts.in} → ${out}`], ['Bytes', r.bytesIn]]));
      }),
    'coffer -n app kms encrypt-file backups --in db.dump',
    'pg_dump app | coffer -n app kms encrypt-file backups --in - --out db.dump.cfev',
  );

  examples(
    kms
      .command('decrypt-file')
      .description('decrypt an envelope file with the key its header names; the output appears only when every chunk authenticated (to stdout: a failure stops it part way, exit code 1)')
      .requiredOption('--in <file>', 'the envelope file (- for stdin)')
      .option('--out <file>', 'the plaintext file, mode 0600 (- for stdout; default: --in without .cfev)')
      .option('--key-namespace <name>', 'unwrap the data key in this namespace instead of the one in the header')
      .action(async (opts: IoOpts & { keyNamespace?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const out = opts.out ?? (opts.in !== '-' && opts.in!.endsWith('.cfev') ? opts.in!.slice(0, -5) : undefined);
        if (out === undefined) throw usageError('give --out FILE (or - for stdout): --in does not end in .cfev');
        const client = ctx.client({ auth: true });
        const options = opts.keyNamespace ? { namespace: opts.keyNamespace } : {};
        if (opts.in === '-' || out === '-') {
          await streamThrough(opts.in!, out, (source) => client.kms.decryptStream(source, options));
          return;
        }
        const r = await client.kms.decryptFile(opts.in!, out, { ...options, onProgress: progressReporter('Decrypting') });
        ctx.print({ in: opts.in, out, bytes: r.bytesOut }, () => fields([['Decrypted', `${opts.in} → ${out}`], ['Bytes', r.bytesOut]]));
      }),
    'coffer kms decrypt-file --in db.dump.cfev',
    'coffer kms decrypt-file --in db.dump.cfev --out - | psql app',
  );
}

/** stdin/file → transform → stdout/file, for encrypt-file and decrypt-file with '-'. */
async function streamThrough(input: string, output: string, transform: (source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>): Promise<void> {
  const { createReadStream } = await import('node:fs');
  if (input !== '-') await stat(input);
  const source = input === '-' ? process.stdin : createReadStream(input);
  const sink = output === '-' ? process.stdout : createWriteStream(output, { mode: 0o600 });
  try {
    await pipeline(Readable.from(transform(source)), sink);
  } catch (err) {
    // A file cut short by a failure (a chunk that did not authenticate) must not pass for the data.
    if (output !== '-') await unlink(output).catch(() => undefined);
    throw err;
  }
}
