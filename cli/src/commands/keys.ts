/**
 * `coffer byok` (bring your own key) and `coffer escrow` (two-person escrow
 * export). Key material only moves through files: wrapped material is read from
 * a file, an escrow export is written to a file created 0600 before the one-shot
 * download starts (so a file problem cannot lose the export), and nothing is
 * written to a terminal unless asked for with `--out -`.
 */
import { open, readFile, unlink, writeFile } from 'node:fs/promises';
import { ESCROW_ALGORITHMS, IMPORT_ALGORITHMS, type EscrowAlgorithm, type EscrowRequest, type ImportAlgorithm, type ImportParams } from '@coffer/sdk';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { fields, table } from '../output.js';
import { duration, examples, integer } from './common.js';

async function readInputFile(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new CliError(`cannot read ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

/** The import token from --import-token or --token-file (the file params wrote). */
async function importToken(opts: { importToken?: string; tokenFile?: string }): Promise<string> {
  if ((opts.importToken === undefined) === (opts.tokenFile === undefined)) throw usageError('give exactly one of --import-token and --token-file');
  const token = opts.importToken ?? (await readInputFile(opts.tokenFile!, 'the import token file')).toString('utf8').trim();
  if (!token) throw usageError('empty import token');
  return token;
}

/** Raw wrapped bytes (as openssl writes them), or base64 text with --base64; sent base64. */
async function wrappedMaterial(file: string, base64: boolean | undefined): Promise<string> {
  const bytes = await readInputFile(file, 'the wrapped key material');
  if (!base64) return bytes.toString('base64');
  const text = bytes.toString('utf8').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw usageError('--wrapped-file is not base64 (drop --base64 for raw bytes)');
  return text;
}

async function saveParams(params: ImportParams, publicKeyOut: string, tokenOut: string): Promise<void> {
  await writeFile(publicKeyOut, params.public_key.endsWith('\n') ? params.public_key : `${params.public_key}\n`, { mode: 0o644 });
  await writeFile(tokenOut, `${params.import_token}\n`, { mode: 0o600 });
}

function renderParams(p: ImportParams, publicKeyOut: string, tokenOut: string): string {
  return fields([
    ['Algorithm', p.algorithm],
    ['Wrapping key', `${p.wrapping_key_spec} (${p.wrapping_key_origin}), saved to ${publicKeyOut}`],
    ['Import token', `saved to ${tokenOut} (one import attempt)`],
    ['Expires', p.expires_at],
  ]);
}

function renderEscrow(r: EscrowRequest): string {
  return fields([
    ['ID', r.id],
    ['Namespace', r.namespace],
    r.kms_key ? ['Key', `${r.kms_key.name} version ${r.kms_key.version}`] : ['KEK version', r.kek_version],
    ['Algorithm', r.algorithm],
    ['State', r.state],
    ['Requested by', r.requested_by],
    ['Approved by', r.approved_by],
    ['Created', r.created_at],
    ['Expires', r.expires_at],
    ['Approved', r.approved_at],
    ['Downloaded', r.downloaded_at],
  ]);
}

const algorithmOption = () => new Option('--algorithm <name>', 'wrapping algorithm').choices([...IMPORT_ALGORITHMS]).default('RSAES_OAEP_SHA_256');

export function registerKeys(program: Command): void {
  const byok = examples(
    program.command('byok').description('bring your own key: import 256-bit key material as a namespace KEK version (or, PKCS#11 seal, the root key)'),
    'coffer byok params payments-prod',
    'coffer byok import payments-prod --token-file import-token.txt --wrapped-file wrapped.bin',
  );

  type ParamsOpts = { algorithm: ImportAlgorithm; publicKeyOut: string; tokenOut: string };
  const paramsOptions = (cmd: Command) =>
    cmd
      .addOption(algorithmOption())
      .option('--public-key-out <file>', 'where to save the wrapping public key (PEM)', 'wrapping-key.pem')
      .option('--token-out <file>', 'where to save the import token (mode 0600)', 'import-token.txt');
  type ImportOpts = { importToken?: string; tokenFile?: string; wrappedFile: string; base64?: boolean };
  const importOptions = (cmd: Command) =>
    cmd
      .option('--token-file <file>', 'the import token file written by params')
      .option('--import-token <token>', 'the import token itself')
      .requiredOption('--wrapped-file <file>', 'the wrapped key material: raw bytes as openssl writes them')
      .option('--base64', 'the wrapped file holds base64 text instead of raw bytes');

  examples(
    paramsOptions(
      byok
        .command('params')
        .description('get a wrapping public key and a one-attempt import token (24 h) for a namespace; saves them to files (admin on the namespace)')
        .argument('<namespace>'),
    ).action(async (namespace: string, opts: ParamsOpts, cmd: Command) => {
      const ctx = Context.of(cmd);
      const params = await ctx.client({ auth: true }).byok.importParams(namespace, { algorithm: opts.algorithm });
      await saveParams(params, opts.publicKeyOut, opts.tokenOut);
      ctx.print(params, () => renderParams(params, opts.publicKeyOut, opts.tokenOut));
    }),
    'coffer byok params payments-prod',
    'coffer byok params payments-prod --algorithm RSA_AES_KEY_WRAP_SHA_256 --public-key-out wrap.pem --token-out token.txt',
  );

  examples(
    importOptions(
      byok
        .command('import')
        .description('import wrapped key material as the namespace\'s new KEK version (origin external); one attempt per import token')
        .argument('<namespace>'),
    ).action(async (namespace: string, opts: ImportOpts, cmd: Command) => {
      const ctx = Context.of(cmd);
      const token = await importToken(opts);
      const material = await wrappedMaterial(opts.wrappedFile, opts.base64);
      const r = await ctx.client({ auth: true }).byok.importKey(namespace, token, material);
      ctx.print(r, () => `Namespace ${r.namespace}: imported KEK version ${r.version} (${r.origin}) is current; ${r.deks_to_rewrap} DEKs to rewrap\n`);
    }),
    'coffer byok import payments-prod --token-file import-token.txt --wrapped-file wrapped.bin',
    'coffer byok import payments-prod --import-token "$IMPORT_TOKEN" --wrapped-file wrapped.b64 --base64',
  );

  examples(
    paramsOptions(
      byok.command('root-params').description('PKCS#11 seal: import parameters for the next root key (server admin); saves them to files'),
    ).action(async (opts: ParamsOpts, cmd: Command) => {
      const ctx = Context.of(cmd);
      const params = await ctx.client({ auth: true }).byok.rootImportParams({ algorithm: opts.algorithm });
      await saveParams(params, opts.publicKeyOut, opts.tokenOut);
      ctx.print(params, () => renderParams(params, opts.publicKeyOut, opts.tokenOut));
    }),
    'coffer byok root-params --algorithm RSA_AES_KEY_WRAP_SHA_1',
  );

  examples(
    importOptions(
      byok.command('root-import').description('PKCS#11 seal: import wrapped key material into the HSM as the next root key version (server admin)'),
    ).action(async (opts: ImportOpts, cmd: Command) => {
      const ctx = Context.of(cmd);
      const token = await importToken(opts);
      const material = await wrappedMaterial(opts.wrappedFile, opts.base64);
      const r = await ctx.client({ auth: true }).byok.importRootKey(token, material);
      ctx.print(r, () => fields([['Root key version', r.root_version], ['Key label', r.key_label ?? null]]));
    }),
    'coffer byok root-import --token-file import-token.txt --wrapped-file wrapped.bin',
  );

  const escrow = examples(
    program
      .command('escrow')
      .description('two-person escrow export of a namespace KEK version: one admin requests, another approves, the requester downloads once'),
    'coffer escrow request payments-prod --public-key escrow.pub',
    'coffer escrow approve 3f6c…     # as a different admin',
    'coffer escrow download 3f6c… --out kek.wrapped',
  );

  examples(
    escrow
      .command('request')
      .description('request an export of a KEK version, wrapped under your RSA public key (PEM file, 2048-8192 bits)')
      .argument('<namespace>')
      .requiredOption('--public-key <file>', 'PEM public key the export is wrapped under')
      .option('--version <n>', 'KEK version (default: the current one)', integer(1))
      .addOption(new Option('--algorithm <name>', 'wrapping algorithm').choices([...ESCROW_ALGORITHMS]).default('RSAES_OAEP_SHA_256'))
      .option('--ttl <duration>', 'how long the request stays valid (1m to 7d; default 24h)', duration)
      .action(async (namespace: string, opts: { publicKey: string; version?: number; algorithm: EscrowAlgorithm; ttl?: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const publicKey = (await readInputFile(opts.publicKey, 'the public key')).toString('utf8');
        const r = await ctx.client({ auth: true }).escrow.request({
          namespace,
          public_key: publicKey,
          algorithm: opts.algorithm,
          kek_version: opts.version,
          ttl_seconds: opts.ttl === undefined ? undefined : Math.round(opts.ttl / 1000),
        });
        ctx.print(r, () => `${renderEscrow(r)}\nAsk another admin of ${r.namespace} to run: coffer escrow approve ${r.id}\n`);
      }),
    'coffer escrow request payments-prod --public-key escrow.pub',
    'coffer escrow request payments-prod --version 2 --public-key escrow.pub --algorithm RSA_AES_KEY_WRAP_SHA_256 --ttl 2h',
  );

  examples(
    escrow
      .command('list')
      .description('requests of a namespace, newest first (at most 100)')
      .option('--ns <namespace>', 'the namespace (default: -n/COFFER_NAMESPACE/profile)')
      .action(async (opts: { ns?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const { requests } = await ctx.client({ auth: true }).escrow.list(opts.ns ?? ctx.namespace());
        ctx.print({ requests }, () =>
          requests.length
            ? table(
                requests.map((r) => [r.id, r.kms_key ? `key ${r.kms_key.name} v${r.kms_key.version}` : `v${r.kek_version}`, r.state, r.requested_by, r.approved_by ?? '-', r.expires_at]),
                ['ID', 'VERSION', 'STATE', 'REQUESTED BY', 'APPROVED BY', 'EXPIRES'],
              )
            : '',
        );
        if (!requests.length && ctx.globals.format === 'table') process.stderr.write('no escrow requests\n');
      }),
    'coffer escrow list --ns payments-prod',
    'coffer -n payments-prod escrow list --format json',
  );

  examples(
    escrow
      .command('show')
      .description('one request and its state (pending, approved, downloaded, expired)')
      .argument('<id>')
      .action(async (id: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const r = await ctx.client({ auth: true }).escrow.get(id);
        ctx.print(r, () => renderEscrow(r));
      }),
    'coffer escrow show 3f6c2a1e-…',
  );

  examples(
    escrow
      .command('approve')
      .description('approve a request (admin on the namespace, not the requester)')
      .argument('<id>')
      .action(async (id: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const r = await ctx.client({ auth: true }).escrow.approve(id);
        ctx.print(r, () => `${renderEscrow(r)}\nThe requester can now download it once: coffer escrow download ${r.id} --out FILE\n`);
      }),
    'coffer escrow approve 3f6c2a1e-…',
  );

  examples(
    escrow
      .command('download')
      .description(
        'download an approved export once (the requester): the wrapped KEK, raw bytes, goes to FILE (created 0600, never overwritten) ' +
          'or, with --out -, to stdout; unwrap it with your private key (see the README)',
      )
      .argument('<id>')
      .requiredOption('--out <file>', 'where to write the wrapped key ("-" for stdout)')
      .action(async (id: string, opts: { out: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const toStdout = opts.out === '-';
        // Created before the one-shot download: an unwritable path fails here, not after the export is spent.
        let handle;
        if (!toStdout) {
          try {
            handle = await open(opts.out, 'wx', 0o600);
          } catch (err) {
            throw new CliError(`cannot create ${opts.out} (${(err as NodeJS.ErrnoException).code ?? 'unwritable'}); it must not exist yet`);
          }
        }
        let written = false;
        try {
          const { wrapped_key_material: wrapped, ...meta } = await client.escrow.download(id);
          const bytes = Buffer.from(wrapped, 'base64');
          if (toStdout) {
            process.stdout.write(bytes);
            // Metadata to stderr: stdout carries the key.
            process.stderr.write(`Downloaded the escrow export of ${meta.namespace} KEK v${meta.kek_version} (${meta.algorithm}, ${bytes.length} bytes)\n`);
            return;
          }
          await handle!.writeFile(bytes);
          written = true;
          ctx.print({ ...meta, out: opts.out, bytes: bytes.length }, () =>
            `Wrote the escrow export of ${meta.namespace} KEK v${meta.kek_version} (${meta.algorithm}, ${bytes.length} bytes) to ${opts.out}\n`,
          );
        } finally {
          await handle?.close();
          // A refused download leaves no empty file behind to block the next attempt.
          if (handle && !written) await unlink(opts.out).catch(() => undefined);
        }
      }),
    'coffer escrow download 3f6c2a1e-… --out kek.wrapped',
    'coffer escrow download 3f6c2a1e-… --out - | openssl pkeyutl -decrypt -inkey escrow.key -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -out kek.bin',
  );
}
