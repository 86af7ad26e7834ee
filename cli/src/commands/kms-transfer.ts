/**
 * `coffer kms key import|export`: BYOK for named keys and wrapped export.
 * Key material only moves through files. Import wraps the key here under the
 * namespace's one-time wrapping key (the server never sees it in the clear on
 * the wire); export writes either the wrapped blob, or with --private-key the
 * unwrapped key, to a new file created 0600.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { KMS_KEY_TYPES, unwrapKeyExport, type KmsKeyType } from '@coffer/sdk';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { duration, examples, integer } from './common.js';

const SYMMETRIC = new Set<string>(['aes256-gcm', 'xchacha20-poly1305', 'hmac-sha256', 'hmac-sha512']);

async function readFileOr(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new CliError(`cannot read ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

/** A private key from PEM (any format node reads) or PKCS#8 DER. */
function privateKeyFrom(bytes: Buffer, file: string): KeyObject {
  try {
    return bytes.includes('-----BEGIN') ? createPrivateKey(bytes) : createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8' });
  } catch {
    throw usageError(`${file} is not a private key (PEM, or PKCS#8 DER)`);
  }
}

/** Writes to a new file only (0600): an export never overwrites anything. */
async function writeNew(file: string, data: Buffer | string): Promise<void> {
  let handle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (err) {
    throw new CliError(`cannot create ${file} (${(err as NodeJS.ErrnoException).code ?? 'unwritable'}); it must not exist yet`);
  }
  try {
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
}

type ImportOpts = { keyFile: string; type?: KmsKeyType; exportable?: boolean; exportLocked?: boolean; deletionAllowed?: boolean };
type ExportOpts = { publicKey?: string; request?: string; out: string; privateKey?: string; version?: number; algorithm?: 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_256' };
type ExportRequestOpts = { publicKey: string; version?: number; algorithm?: 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_256'; /** Milliseconds. */ ttl?: number };

export function registerKmsTransfer(key: Command): void {
  examples(
    key
      .command('import')
      .description('bring your own key: import key material as a new key (with --type, origin external) or as the next version of an imported key')
      .argument('<name>')
      .requiredOption('--key-file <file>', 'the key: raw bytes for symmetric types, a private key (PEM or PKCS#8 DER) for the others')
      .addOption(new Option('--type <type>', 'create a new key of this type (without: a new version of an imported key)').choices([...KMS_KEY_TYPES]))
      .option('--exportable', 'with --type: allow wrapped export (irreversible)')
      .option('--export-locked', 'with --type: never exportable (irreversible)')
      .option('--deletion-allowed', 'with --type: allow `coffer kms key delete`')
      .action(async (name: string, opts: ImportOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const namespace = ctx.namespace();
        if (!opts.type && (opts.exportable || opts.exportLocked || opts.deletionAllowed)) throw usageError('--exportable, --export-locked and --deletion-allowed go with --type (a new key)');
        const type = opts.type ?? (await client.kms.keys.read(namespace, name)).type;
        const bytes = await readFileOr(opts.keyFile, 'the key file');
        const material = SYMMETRIC.has(type) ? bytes : privateKeyFrom(bytes, opts.keyFile);
        try {
          const create = opts.type ? { type: opts.type, exportable: opts.exportable, export_locked: opts.exportLocked, deletion_allowed: opts.deletionAllowed } : undefined;
          const k = await client.kms.keys.importMaterial(namespace, name, material, create);
          ctx.print(k, () => `Key ${k.name} (${k.type}, origin ${k.origin}): imported version ${k.latest_version}\n`);
        } finally {
          bytes.fill(0);
        }
      }),
    'coffer -n app kms key import payments --type aes256-gcm --key-file payments.key',
    'coffer -n app kms key import release-signing --type ed25519 --key-file signing.pem --export-locked',
    'coffer -n app kms key import payments --key-file payments-v2.key     # next version',
  );

  examples(
    key
      .command('export')
      .description('export one version of an exportable key, wrapped under your RSA public key; with --private-key, unwrapped here')
      .argument('<name>')
      .option('--public-key <file>', 'RSA public key (PEM, 2048-8192 bits) to wrap the key under (not with --request)')
      .option('--request <id>', 'an approved export request (namespaces that require approval): its public key, version and algorithm are used, once')
      .requiredOption('--out <file>', 'new file (0600) for the wrapped key (raw bytes), or the key itself with --private-key')
      .option('--private-key <file>', 'the matching RSA private key: unwrap here and write the key (raw bytes, or a PKCS#8 PEM private key)')
      .option('--version <n>', 'key version (default: the latest)', integer(1))
      .addOption(new Option('--algorithm <name>', 'wrapping (default RSA_AES_KEY_WRAP_SHA_256)').choices(['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256']))
      .action(async (name: string, opts: ExportOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        if ((opts.publicKey === undefined) === (opts.request === undefined)) throw usageError('give --public-key, or --request with an approved export request');
        if (opts.request !== undefined && (opts.version !== undefined || opts.algorithm !== undefined)) throw usageError('--version and --algorithm are the approved request\'s: leave them out with --request');
        const publicKey = opts.publicKey === undefined ? undefined : (await readFileOr(opts.publicKey, 'the public key')).toString('utf8');
        const unwrapWith = opts.privateKey ? privateKeyFrom(await readFileOr(opts.privateKey, 'the private key'), opts.privateKey) : undefined;
        const r = await ctx
          .client({ auth: true })
          .kms.keys.export(ctx.namespace(), name, publicKey === undefined ? { request_id: opts.request! } : { public_key: publicKey, algorithm: opts.algorithm, version: opts.version });
        if (unwrapWith) {
          const material = unwrapKeyExport(r, unwrapWith);
          try {
            await writeNew(opts.out, r.material_format === 'raw' ? material : createPrivateKey({ key: material, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }));
          } finally {
            material.fill(0);
          }
        } else {
          await writeNew(opts.out, Buffer.from(r.wrapped_key_material, 'base64'));
        }
        const { wrapped_key_material: _omitted, ...shown } = r;
        ctx.print({ ...shown, out: opts.out, unwrapped: unwrapWith !== undefined }, () =>
          `Key ${r.name} version ${r.key_version} (${r.type}, ${r.material_format}) ${unwrapWith ? 'unwrapped' : `wrapped (${r.algorithm})`} to ${opts.out}\n`,
        );
      }),
    'coffer -n app kms key export payments --public-key escrow.pub --out payments.wrapped',
    'coffer -n app kms key export payments --public-key escrow.pub --private-key escrow.key --out payments.key',
    'coffer -n app kms key export payments --request 3f1c…  --private-key escrow.key --out payments.key   # approved request',
  );

  examples(
    key
      .command('export-request')
      .description('ask for a second identity\'s approval to export a key (namespaces with kms_export_approval); approve with `coffer escrow approve <id>`')
      .argument('<name>')
      .requiredOption('--public-key <file>', 'RSA public key (PEM, 2048-8192 bits) the export will be wrapped under')
      .option('--version <n>', 'key version (default: the latest)', integer(1))
      .option('--ttl <duration>', 'how long it may be approved and used (1m to 7d; default 24h)', duration)
      .addOption(new Option('--algorithm <name>', 'wrapping (default RSA_AES_KEY_WRAP_SHA_256)').choices(['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256']))
      .action(async (name: string, opts: ExportRequestOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const publicKey = (await readFileOr(opts.publicKey, 'the public key')).toString('utf8');
        const r = await ctx
          .client({ auth: true })
          .kms.keys.requestExport(ctx.namespace(), name, { public_key: publicKey, algorithm: opts.algorithm, version: opts.version, ttl_seconds: opts.ttl === undefined ? undefined : Math.round(opts.ttl / 1000) });
        ctx.print(r, () => `Export request ${r.id} for key ${name} version ${r.kms_key?.version}: pending until another identity runs \`coffer escrow approve ${r.id}\`; then \`coffer kms key export ${name} --request ${r.id} --out FILE\`\n`);
      }),
    'coffer -n app kms key export-request payments --public-key escrow.pub',
  );
}
