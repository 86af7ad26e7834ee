/**
 * `coffer ns import-key|export|import` (also `coffer namespace …`): moving a
 * namespace to another Coffer server. On the TARGET, `import-key` writes the
 * namespace's one-time import key (a public key, PEM); on the SOURCE, `export`
 * seals the namespace for that key into a bundle file; on the target, `import`
 * loads it. The bundle opens only with the target's import key, but it holds
 * every secret value: it is written 0600 and never over an existing file.
 */
import { readFile } from 'node:fs/promises';
import { createHash, createPublicKey } from 'node:crypto';
import type { NamespaceExportHeader, NamespaceImportResult } from '@coffer/sdk';
import type { Command } from 'commander';
import { Context } from '../context.js';
import { CliError, usageError } from '../errors.js';
import { fields } from '../output.js';
import { writeNewPrivateFile } from '../private-file.js';
import { examples } from './common.js';

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

/** SHA-256 of the key's DER SPKI: what a bundle's header names as its target. */
function fingerprint(pem: string, file: string): string {
  try {
    return createHash('sha256').update(createPublicKey(pem).export({ format: 'der', type: 'spki' })).digest('hex');
  } catch {
    throw usageError(`${file} is not a public key in PEM`);
  }
}

function headerOf(bundle: string): NamespaceExportHeader | undefined {
  try {
    return (JSON.parse(bundle.slice(0, bundle.indexOf('\n'))) as { coffer_namespace_export?: NamespaceExportHeader }).coffer_namespace_export;
  } catch {
    return undefined;
  }
}

const skippedText = (skipped: NamespaceExportHeader['skipped_keys']) => (skipped.length ? skipped.map((k) => `${k.name} (${k.reason})`).join(', ') : 'none');

export function registerNamespaceTransfer(ns: Command): void {
  examples(
    ns
      .command('import-key')
      .description('on the TARGET server: write the import key of namespace NS (created if missing) for `coffer ns export --to-key` on the source (admin; one import, 24 hours)')
      .argument('<ns>', 'the namespace to import into (new or empty)')
      .requiredOption('--out <file>', 'where to write the public key (PEM); never overwritten')
      .action(async (name: string, opts: { out: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const params = await writeNewPrivateFile(opts.out, async () => {
          const p = await ctx.client({ auth: true }).namespaces.importKey(name, { create: true });
          return { content: p.public_key, result: p };
        });
        const summary = { namespace: name, file: opts.out, sha256: fingerprint(params.public_key, opts.out), expires_at: params.expires_at, origin: params.wrapping_key_origin };
        ctx.print(summary, () =>
          fields([
            ['Namespace', name],
            ['Import key', opts.out],
            ['SHA-256', summary.sha256],
            ['Expires', params.expires_at],
            ['Generated in', params.wrapping_key_origin],
          ]) + `Give ${opts.out} to the source server's admin: coffer ns export <ns> --to-key ${opts.out} --out <bundle>\n`,
        );
      }),
    'coffer ns import-key payments --out payments-import.pem',
  );

  examples(
    ns
      .command('export')
      .description("on the SOURCE server: seal namespace NS (every secret with its retained versions, and its exportable named keys) for the target's import key (server admin)")
      .argument('<ns>', 'the namespace to export')
      .requiredOption('--to-key <pemfile>', 'the target server\'s import key (from `coffer ns import-key` there)')
      .requiredOption('--out <file>', 'where to write the bundle (0600, never overwritten)')
      .action(async (name: string, opts: { toKey: string; out: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const pem = await readText(opts.toKey, 'the import key');
        fingerprint(pem, opts.toKey);
        const header = await writeNewPrivateFile(opts.out, async () => {
          const bundle = await ctx.client({ auth: true }).namespaces.export(name, pem);
          const h = headerOf(bundle);
          if (!h) throw new CliError('the server sent something that is not a namespace export');
          return { content: bundle, result: h };
        });
        if (header.skipped_keys.length > 0) {
          process.stderr.write(`warning: named keys not exported (their material never leaves this server): ${skippedText(header.skipped_keys)}\n`);
        }
        ctx.print({ namespace: name, file: opts.out, target_key_sha256: header.target_key_sha256, skipped_keys: header.skipped_keys }, () =>
          fields([
            ['Namespace', name],
            ['Bundle', opts.out],
            ['For import key', header.target_key_sha256],
            ['Keys skipped', skippedText(header.skipped_keys)],
          ]),
        );
      }),
    'coffer ns export payments --to-key payments-import.pem --out payments.bundle',
  );

  examples(
    ns
      .command('import')
      .description('on the TARGET server: load a bundle made for this namespace\'s import key into it (it must be empty; server admin). One attempt per import key')
      .argument('<ns>', 'the namespace whose import key the bundle was made for')
      .argument('<file>', 'the bundle file')
      .action(async (name: string, file: string, _opts: unknown, cmd: Command) => {
        const ctx = Context.of(cmd);
        const bundle = await readText(file, 'the bundle');
        if (!headerOf(bundle)) throw usageError(`${file} is not a Coffer namespace export`);
        const result: NamespaceImportResult = await ctx.client({ auth: true }).namespaces.import(name, bundle);
        ctx.print(result, () =>
          fields([
            ['Namespace', `${result.namespace} (was ${result.source_namespace})`],
            ['Secrets', result.secrets],
            ['Versions', result.versions],
            ['Named keys', result.keys],
            ['Keys skipped', skippedText(result.skipped_keys)],
          ]),
        );
      }),
    'coffer ns import payments payments.bundle',
  );
}
