/** `coffer ns create|list|get|update|delete`, `coffer ns kek status|rotate`, `coffer ns shred [cancel]`. */
import type { KekStatus, NamespaceDetail, NamespaceSummary, ShredSchedule } from '@coffer/sdk';
import { InvalidArgumentError, type Command } from 'commander';
import { Context } from '../context.js';
import { usageError } from '../errors.js';
import { fields, progressBar, table } from '../output.js';
import { duration, examples, integer, plural } from './common.js';
import { registerNamespaceTransfer } from './ns-transfer.js';

/** --rotation-period: a duration (90d, 12w, 24h) in seconds, or "off" for no scheduled rotation (commander would turn a null into ''). */
function rotationPeriod(value: string): number | 'off' {
  if (value === 'off' || value === 'none') return 'off';
  try {
    return duration(value) / 1000;
  } catch {
    throw new InvalidArgumentError('expected a duration like 24h, 90d or 12w (at least 1h), or "off"');
  }
}

function renderKek(k: KekStatus): string {
  const versions = table(
    k.versions.map((v) => [`v${v.version}`, v.state, v.origin, String(v.encryptions), v.created_at, v.retired_at ?? '-']),
    ['VERSION', 'STATE', 'ORIGIN', 'ENCRYPTIONS', 'CREATED', 'RETIRED'],
  );
  const job = k.rewrap;
  return (
    fields([
      ['Namespace', k.namespace],
      ['Current version', k.current_version],
      ['Rotation period', k.rotation_period === null ? 'none' : `${k.rotation_period}s`],
      ['Next rotation', k.next_rotation_at],
      ['Usage limit', k.usage_limit],
      ['Shred date', k.deletion_date],
      ['Rewrap', job ? `${job.state} to v${job.target_version}: ${job.rewrapped}/${job.total} rewrapped, ${job.remaining} remaining` : 'none'],
    ]) + `\n${versions}`
  );
}

function renderShred(s: ShredSchedule): string {
  return s.deletion_date
    ? `Namespace ${s.namespace} is disabled and will be shredded on ${s.deletion_date} (cancel with \`coffer ns shred cancel ${s.namespace}\`)\n`
    : `Namespace ${s.namespace}: no shred scheduled; it is enabled\n`;
}

function renderDetail(ns: NamespaceDetail): string {
  const keks = ns.kek.versions.map((k) => `v${k.version} ${k.state}, ${k.origin}, created ${k.created_at}`).join('\n');
  return fields([
    ['Name', ns.name],
    ['Description', ns.description],
    ['Created', ns.created_at],
    ['Updated', ns.updated_at],
    ['Secrets', ns.secret_count],
    ['Rotation period', ns.rotation_period ? `${ns.rotation_period}s` : null],
    ['KMS export approval', ns.kms_export_approval ? 'required (two-person)' : null],
    ['Shred date', ns.deletion_date ?? null],
    ['KEK version', ns.kek.current_version],
    ['KEK versions', keks],
  ]);
}

export function registerNamespaces(program: Command): void {
  const ns = examples(
    program.command('ns').alias('namespace').description('manage namespaces (each has its own encryption key)'),
    'coffer ns create payments-prod --description "payments, production"',
    'coffer ns list',
  );
  registerNamespaceTransfer(ns);

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
      .command('update')
      .description('change a namespace\'s description and/or its KEK rotation period (admin on the namespace)')
      .argument('<name>')
      .option('--description <text>', 'what the namespace is for')
      .option('--rotation-period <duration>', 'rotate the KEK this often (1h to 10 years: 24h, 90d, 12w), or "off"', rotationPeriod)
      .option('--kms-export-approval', 'exports of the namespace\'s named keys need a second identity\'s approval (cannot be undone)')
      .action(async (name: string, opts: { description?: string; rotationPeriod?: number | 'off'; kmsExportApproval?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        if (opts.description === undefined && opts.rotationPeriod === undefined && !opts.kmsExportApproval) {
          throw usageError('give --description, --rotation-period and/or --kms-export-approval');
        }
        const period = opts.rotationPeriod === 'off' ? null : opts.rotationPeriod;
        const updated = await ctx
          .client({ auth: true })
          .namespaces.update(name, { description: opts.description, rotation_period: period, ...(opts.kmsExportApproval ? { kms_export_approval: true } : {}) });
        ctx.print(updated, () => renderDetail(updated));
      }),
    'coffer ns update payments-prod --rotation-period 90d',
    'coffer ns update payments-prod --rotation-period off --description "payments"',
  );

  const kek = examples(
    ns.command('kek').description('a namespace\'s key encryption key: versions, usage, rotation and rewrap progress'),
    'coffer ns kek status payments-prod',
    'coffer ns kek rotate payments-prod',
  );
  examples(
    kek
      .command('status')
      .description('KEK versions, encryptions per version, schedule and rewrap job progress (admin on the namespace)')
      .argument('<name>')
      .option('--watch', 'follow a running rewrap job until it completes: a progress bar on a terminal, a line per change otherwise (stderr); then the status')
      .option('--interval <seconds>', 'with --watch: seconds between polls', integer(1), 2)
      .action(async (name: string, opts: { watch?: boolean; interval: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        let status = await client.namespaces.kekStatus(name);
        if (opts.watch) status = await watchRewrap(status, () => client.namespaces.kekStatus(name), opts.interval * 1000);
        ctx.print(status, () => renderKek(status));
      }),
    'coffer ns kek status payments-prod',
    'coffer ns kek status payments-prod --watch',
    'coffer ns kek status payments-prod --format json | jq .rewrap',
  );
  examples(
    kek
      .command('rotate')
      .description('add a KEK version that takes every new write; a background job rewraps older DEKs (admin on the namespace)')
      .argument('<name>')
      .action(async (name: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const r = await ctx.client({ auth: true }).namespaces.rotateKek(name);
        ctx.print(
          r,
          () =>
            `Namespace ${r.namespace}: KEK version ${r.version} (${r.origin}) is current; ${plural(r.deks_to_rewrap, 'DEK')} to rewrap\n` +
            (r.deks_to_rewrap > 0 ? `A background job rewraps them; follow it with: coffer ns kek status ${r.namespace} --watch\n` : ''),
        );
      }),
    'coffer ns kek rotate payments-prod',
  );

  const shred = examples(
    ns
      .command('shred')
      .description('schedule crypto-shredding: the namespace is disabled now and its keys destroyed after the window (7-30 days, default 30)')
      .argument('<name>')
      .option('--days <n>', 'pending window in days (7-30)', integer(1))
      .action(async (name: string, opts: { days?: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const s = await ctx.client({ auth: true }).namespaces.shred(name, { pending_window_days: opts.days });
        ctx.print(s, () => renderShred(s));
      }),
    'coffer ns shred old-team --days 7',
    'coffer ns shred cancel old-team',
  );
  examples(
    shred
      .command('cancel')
      .description('cancel a scheduled shred within its window; nothing is lost and the namespace is enabled again')
      .argument('<name>')
      .action(async (name: string, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const s = await ctx.client({ auth: true }).namespaces.cancelShred(name);
        ctx.print(s, () => renderShred(s));
      }),
    'coffer ns shred cancel old-team',
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

/**
 * Polls until the rewrap job is no longer running (or there is none), showing
 * its progress on stderr: a bar redrawn in place on a terminal, else one line
 * per change (CI logs). Returns the last status.
 */
async function watchRewrap(first: KekStatus, poll: () => Promise<KekStatus>, intervalMs: number): Promise<KekStatus> {
  const tty = process.stderr.isTTY === true;
  let status = first;
  let last = '';
  for (;;) {
    const job = status.rewrap;
    if (!job) {
      process.stderr.write(`no rewrap job for ${status.namespace}: every DEK is under KEK v${status.current_version}\n`);
      return status;
    }
    const done = job.total - job.remaining;
    if (tty) {
      process.stderr.write(`\r\u001b[2K${progressBar(done, job.total)}  rewrap to v${job.target_version}: ${done}/${job.total}, ${job.remaining} remaining`);
    } else {
      const line = `rewrap to v${job.target_version}: ${done}/${job.total} rewrapped, ${job.remaining} remaining (${job.state})`;
      if (line !== last) process.stderr.write(`${line}\n`);
      last = line;
    }
    if (job.state !== 'running') {
      if (tty) process.stderr.write('\n');
      return status;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    status = await poll();
  }
}
