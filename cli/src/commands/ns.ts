/** `coffer ns create|list|get|delete`. */
import type { NamespaceDetail, NamespaceSummary } from '@coffer/sdk';
import type { Command } from 'commander';
import { Context } from '../context.js';
import { fields, table } from '../output.js';
import { examples, plural } from './common.js';

function renderDetail(ns: NamespaceDetail): string {
  const keks = ns.kek.versions.map((k) => `v${k.version} ${k.state}, ${k.origin}, created ${k.created_at}`).join('\n');
  return fields([
    ['Name', ns.name],
    ['Description', ns.description],
    ['Created', ns.created_at],
    ['Updated', ns.updated_at],
    ['Secrets', ns.secret_count],
    ['KEK version', ns.kek.current_version],
    ['KEK versions', keks],
  ]);
}

export function registerNamespaces(program: Command): void {
  const ns = examples(
    program.command('ns').description('manage namespaces (each has its own encryption key)'),
    'coffer ns create payments-prod --description "payments, production"',
    'coffer ns list',
  );

  examples(
    ns
      .command('create')
      .description('create a namespace')
      .argument('<name>', 'lowercase letters, digits and hyphens')
      .option('--description <text>', 'what the namespace is for')
      .action(async (name: string, opts: { description?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const created = await ctx.client({ auth: true }).namespaces.create(name, { description: opts.description });
        ctx.print(created, () => renderDetail(created));
      }),
    'coffer ns create payments-prod --description "payments, production"',
  );

  examples(
    ns
      .command('list')
      .description('list namespaces')
      .action(async (_opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const namespaces: NamespaceSummary[] = [];
        for await (const n of ctx.client({ auth: true }).namespaces.listAll()) namespaces.push(n);
        // All pages merged into one answer of the server's shape.
        ctx.print({ namespaces, next_cursor: null }, () =>
          namespaces.length ? table(namespaces.map((n) => [n.name, n.description, n.created_at]), ['NAME', 'DESCRIPTION', 'CREATED']) : '',
        );
        if (!namespaces.length && ctx.globals.format === 'table') process.stderr.write('no namespaces yet\n');
      }),
    'coffer ns list',
    'coffer ns list --format json',
  );

  examples(
    ns
      .command('get')
      .description('show a namespace: description, secret count, key versions')
      .argument('<name>')
      .action(async (name: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const detail = await ctx.client({ auth: true }).namespaces.get(name);
        ctx.print(detail, () => renderDetail(detail));
      }),
    'coffer ns get payments-prod',
  );

  examples(
    ns
      .command('delete')
      .description('delete a namespace and its keys; refused while it holds secrets unless --force')
      .argument('<name>')
      .option('--force', 'also delete every secret in it (irreversible)')
      .action(async (name: string, opts: { force?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const result = await ctx.client({ auth: true }).namespaces.delete(name, { force: opts.force });
        ctx.print(result, () => `Deleted namespace ${name} (${plural(result.secrets_deleted, 'secret')} deleted)\n`);
      }),
    'coffer ns delete scratch',
    'coffer ns delete old-team --force',
  );
}
