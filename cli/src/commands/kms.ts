/**
 * `coffer kms key …`: named keys of a namespace (the namespace is -n/--namespace
 * or the profile's). The operations on them are in kms-data.ts.
 */
import { KMS_KEY_TYPES, type KmsKeyConfigUpdate, type KmsKeyInfo, type KmsKeySummary, type KmsKeyType } from '@coffer/sdk';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { Context } from '../context.js';
import { usageError } from '../errors.js';
import { fields, table } from '../output.js';
import { duration, examples, integer } from './common.js';
import { registerKmsData } from './kms-data.js';
import { registerKmsTransfer } from './kms-transfer.js';

/** --auto-rotate: a duration like 30d, or 0 for manual rotation only → seconds. */
function rotationPeriod(value: string): number {
  if (value === '0') return 0;
  return Math.round(duration(value) / 1000);
}

function yesNo(value: string): boolean {
  if (value === 'true' || value === 'yes') return true;
  if (value === 'false' || value === 'no') return false;
  throw new InvalidArgumentError('expected true or false');
}

export function renderKey(k: KmsKeyInfo): string {
  const head = fields([
    ['Namespace', k.namespace],
    ['Name', k.name],
    ['Type', k.type],
    ['Origin', k.origin],
    ['HSM', k.hsm],
    ['Operations', k.operations.join(', ')],
    ['Latest version', k.latest_version],
    ['Min decryption version', k.min_decryption_version],
    ['Min encryption version', k.min_encryption_version || '-'],
    ['Min available version', k.min_available_version],
    ['Auto-rotate period', k.auto_rotate_period ? `${k.auto_rotate_period}s` : 'manual'],
    ['Exportable', k.exportable],
    ['Export locked', k.export_locked],
    ['Deletion allowed', k.deletion_allowed],
    ['Created', k.created_at],
    ['Updated', k.updated_at],
  ]);
  const versions = table(
    k.versions.map((v) => [String(v.version), v.created_at, v.public_key ? 'yes' : '-']),
    ['VERSION', 'CREATED', 'PUBLIC KEY'],
  );
  return `${head}\n${versions}`;
}

export function registerKms(program: Command): void {
  const kms = examples(
    program
      .command('kms')
      .description('key management for applications: named keys, encrypt/decrypt, data keys, sign/verify, HMAC, file envelopes'),
    'coffer -n app kms key create payments --type aes256-gcm',
    'printf %s "$CARD" | coffer -n app kms encrypt payments > card.enc',
    'coffer -n app kms encrypt-file payments --in backup.tar --out backup.tar.cfev',
  );
  const key = examples(
    kms.command('key').description('create, read, list, configure, rotate, trim, delete, import and export named keys'),
    'coffer -n app kms key list',
    'coffer -n app kms key read payments',
  );

  type CreateOpts = { type: KmsKeyType; exportable?: boolean; exportLocked?: boolean; deletionAllowed?: boolean; autoRotate?: number; hsm?: boolean };
  examples(
    key
      .command('create')
      .description('create a named key (version 1) of a type')
      .argument('<name>')
      .addOption(new Option('--type <type>', 'key type').choices([...KMS_KEY_TYPES]).makeOptionMandatory())
      .option('--exportable', 'allow wrapped export of the key material (irreversible)')
      .option('--export-locked', 'never exportable (irreversible)')
      .option('--deletion-allowed', 'allow `coffer kms key delete`')
      .option('--auto-rotate <period>', 'rotate on a schedule: a duration like 30d (at least 1h), 0 for manual only', rotationPeriod)
      .option('--hsm', 'generate and keep the key in the HSM (PKCS#11 seal)')
      .action(async (name: string, opts: CreateOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const k = await ctx.client({ auth: true }).kms.keys.create(ctx.namespace(), name, {
          type: opts.type,
          exportable: opts.exportable,
          export_locked: opts.exportLocked,
          deletion_allowed: opts.deletionAllowed,
          auto_rotate_period: opts.autoRotate,
          hsm: opts.hsm,
        });
        ctx.print(k, () => renderKey(k));
      }),
    'coffer -n app kms key create payments --type aes256-gcm --auto-rotate 90d',
    'coffer -n app kms key create release-signing --type ed25519 --export-locked',
    'coffer -n app kms key create webhooks --type hmac-sha256 --deletion-allowed',
  );

  examples(
    key
      .command('list')
      .description('the keys of the namespace you may see')
      .option('--limit <n>', 'page size', integer(1))
      .action(async (opts: { limit?: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const namespace = ctx.namespace();
        const keys: KmsKeySummary[] = [];
        for await (const k of client.kms.keys.listAll(namespace, { pageSize: opts.limit })) keys.push(k);
        ctx.print({ namespace, keys }, () => table(keys.map((k) => [k.name, k.type, String(k.latest_version)]), ['NAME', 'TYPE', 'LATEST VERSION']));
      }),
    'coffer -n app kms key list',
    'coffer -n app kms key list --format json | jq -r ".keys[].name"',
  );

  examples(
    key
      .command('read')
      .description('a key\'s settings and versions (public keys with --format json)')
      .argument('<name>')
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        const ctx = Context.of(cmd);
        const k = await ctx.client({ auth: true }).kms.keys.read(ctx.namespace(), name);
        ctx.print(k, () => renderKey(k));
      }),
    'coffer -n app kms key read payments',
    'coffer -n app kms key read release-signing --format json',
  );

  examples(
    key
      .command('rotate')
      .description('add a version, which takes new encryptions and signatures; older versions still decrypt and verify')
      .argument('<name>')
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        const ctx = Context.of(cmd);
        const k = await ctx.client({ auth: true }).kms.keys.rotate(ctx.namespace(), name);
        ctx.print(k, () => `Key ${k.name}: version ${k.latest_version} is the latest\n`);
      }),
    'coffer -n app kms key rotate payments',
  );

  type ConfigOpts = {
    minDecryptionVersion?: number;
    minEncryptionVersion?: number;
    deletionAllowed?: boolean;
    exportable?: boolean;
    exportLocked?: boolean;
    autoRotate?: number;
  };
  examples(
    key
      .command('config')
      .description('change a key\'s settings')
      .argument('<name>')
      .option('--min-decryption-version <n>', 'refuse to decrypt (verify) with older versions', integer(1))
      .option('--min-encryption-version <n>', 'encrypt with at least this version (0: latest)', integer(0))
      .option('--deletion-allowed <bool>', 'allow deleting the key (true/false)', yesNo)
      .option('--exportable', 'make the key exportable (irreversible)')
      .option('--export-locked', 'lock the key non-exportable (irreversible)')
      .option('--auto-rotate <period>', 'a duration like 30d, or 0 for manual rotation only', rotationPeriod)
      .action(async (name: string, opts: ConfigOpts, cmd: Command) => {
        const ctx = Context.of(cmd);
        const changes: KmsKeyConfigUpdate = {
          min_decryption_version: opts.minDecryptionVersion,
          min_encryption_version: opts.minEncryptionVersion,
          deletion_allowed: opts.deletionAllowed,
          exportable: opts.exportable,
          export_locked: opts.exportLocked,
          auto_rotate_period: opts.autoRotate,
        };
        if (Object.values(changes).every((v) => v === undefined)) throw usageError('nothing to change: give at least one option (see --help)');
        const k = await ctx.client({ auth: true }).kms.keys.config(ctx.namespace(), name, changes);
        ctx.print(k, () => renderKey(k));
      }),
    'coffer -n app kms key config payments --min-decryption-version 3',
    'coffer -n app kms key config webhooks --deletion-allowed true --auto-rotate 30d',
  );

  examples(
    key
      .command('trim')
      .description('destroy the versions below a version (at most the min decryption version): what they encrypted is lost')
      .argument('<name>')
      .requiredOption('--min-version <n>', 'the oldest version to keep', integer(1))
      .action(async (name: string, opts: { minVersion: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const r = await ctx.client({ auth: true }).kms.keys.trim(ctx.namespace(), name, opts.minVersion);
        ctx.print(r, () => `Key ${r.name}: ${r.versions_removed} versions removed; the oldest is now ${r.min_available_version}\n`);
      }),
    'coffer -n app kms key trim payments --min-version 3',
  );

  examples(
    key
      .command('delete')
      .description('delete a key with every version (only with deletion allowed): everything it encrypted is lost')
      .argument('<name>')
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        const ctx = Context.of(cmd);
        const r = await ctx.client({ auth: true }).kms.keys.delete(ctx.namespace(), name);
        ctx.print(r, () => `Deleted key ${r.name} (${r.versions_deleted} versions)\n`);
      }),
    'coffer -n app kms key config old-key --deletion-allowed true && coffer -n app kms key delete old-key',
  );

  registerKmsTransfer(key);

  registerKmsData(kms);
}
