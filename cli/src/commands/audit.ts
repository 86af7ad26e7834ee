/** `coffer audit search|tail|verify|hash`: the server's audit log (admin token). */
import { CofferError, MAX_AUDIT_PAGE, type AuditEntry, type AuditFilter, type AuditOutcome, type CofferClient, type FetchFn } from '@coffer/sdk';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { Context } from '../context.js';
import { EXIT, exitCodeFor, usageError } from '../errors.js';
import { readSecretFromStdin } from '../input.js';
import { table, yaml } from '../output.js';
import { examples, integer } from './common.js';

const OUTCOMES: AuditOutcome[] = ['success', 'denied', 'error', 'unknown'];
const HEADER = ['SEQ', 'TIME', 'IDENTITY', 'ACTION', 'NAMESPACE', 'PATH', 'STATUS'];
/** Seconds between `tail --follow` polls, at most. */
const MAX_INTERVAL = 3600;

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DURATION = /^(\d{1,9})([smhdw])$/;
/** A date, optionally with a time and an offset: what `new Date()` parses the same way everywhere. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?$/i;

/**
 * --since/--until: an ISO 8601 time, or a duration ago (`15m`, `2h`, `7d`), as the
 * ISO timestamp the server takes. A date alone is midnight UTC; a time without an
 * offset is local time (JavaScript's reading of both).
 */
export function auditTime(value: string, now = Date.now()): string {
  const duration = DURATION.exec(value);
  let time: Date | undefined;
  if (duration) time = new Date(now - Number(duration[1]) * UNIT_MS[duration[2] as keyof typeof UNIT_MS]);
  else if (ISO_TIME.test(value) && !pastMonthEnd(value)) time = new Date(value);
  if (!time || Number.isNaN(time.getTime())) {
    throw new InvalidArgumentError('expected an ISO 8601 time (2025-05-01, 2025-05-01T12:00:00Z) or a duration ago (30s, 15m, 2h, 7d, 2w)');
  }
  return time.toISOString();
}

/** JavaScript would roll a day past the month's end over into the next month (02-30 → 03-02). */
function pastMonthEnd(iso: string): boolean {
  const [year, month, day] = iso.slice(0, 10).split('-').map(Number) as [number, number, number];
  return day > new Date(Date.UTC(year, month, 0)).getUTCDate();
}

interface FilterOptions {
  identity?: string;
  path?: string;
  action?: string;
  outcome?: AuditOutcome;
  since?: string;
  until?: string;
}

/** The filters search and tail share; the namespace filter is the global -n/--namespace. */
function withFilters(cmd: Command): Command {
  return cmd
    .option('--identity <id>', 'entries of this identity (e.g. root)')
    .option('--path <prefix>', 'entries whose secret path starts with PREFIX')
    .option('--action <action>', 'entries of this action (secret.read, secret.write, secret.list, namespace.create, sys.unseal, ...)')
    .addOption(new Option('--outcome <outcome>', 'entries with this outcome').choices(OUTCOMES))
    .option('--since <time>', 'entries at or after TIME: ISO 8601 or a duration ago (15m, 2h, 7d)', (v) => auditTime(v))
    .option('--until <time>', 'entries before TIME: ISO 8601 or a duration ago', (v) => auditTime(v));
}

function filterOf(ctx: Context, cmd: Command, opts: FilterOptions): AuditFilter {
  // Only a namespace given on the command line filters: COFFER_NAMESPACE, a default for
  // secret commands, would silently hide every other namespace's entries.
  const namespace = cmd.getOptionValueSourceWithGlobals('namespace') === 'cli' ? ctx.globals.namespace : undefined;
  const { identity, path, action, outcome, since, until } = opts;
  return { identity, namespace, path, action, outcome, since, until };
}

const row = (e: AuditEntry): string[] => [String(e.seq), e.time, e.identity?.id ?? '-', e.action, e.namespace || '-', e.path || '-', String(e.status)];

/** The newest `count` matching entries, newest first, in as many pages as that takes. */
async function newest(client: CofferClient, filter: AuditFilter, count: number): Promise<AuditEntry[]> {
  const entries: AuditEntry[] = [];
  if (count === 0) return entries;
  for await (const entry of client.audit.searchAll({ ...filter, order: 'desc', pageSize: Math.min(count, MAX_AUDIT_PAGE) })) {
    entries.push(entry);
    if (entries.length >= count) break;
  }
  return entries;
}

/**
 * `-n` is the global --namespace wherever it appears, except after `audit tail`, where
 * it is the line count, as in tail(1). commander gives global options to the program
 * before the subcommand sees its own, so there `-n` is handed on as `--lines`.
 */
function lineCountAfterTail(program: Command): void {
  const takesValue = (arg: string) => program.options.some((o) => (o.required || o.optional) && (o.short === arg || o.long === arg));
  const parseOptions = program.parseOptions.bind(program);
  program.parseOptions = (args: string[]) => {
    const rewritten = [...args];
    const operands: string[] = [];
    for (let i = 0; i < rewritten.length; i++) {
      const arg = rewritten[i]!;
      if (arg === '--') break;
      const inTail = operands[0] === 'audit' && operands[1] === 'tail';
      if (inTail && arg === '-n') rewritten[i] = '--lines';
      else if (inTail && /^-n./.test(arg)) rewritten[i] = `--lines=${arg.slice(2)}`;
      else if (arg.startsWith('-')) {
        if (!inTail && takesValue(arg)) i++; // skip a global option's value: `coffer -n audit audit tail`
      } else if (!inTail) {
        operands.push(arg);
        if (operands[0] !== 'audit' || (operands.length === 2 && operands[1] !== 'tail')) break;
      }
    }
    return parseOptions(rewritten);
  };
}

export function registerAudit(program: Command): void {
  lineCountAfterTail(program);

  const audit = examples(
    program
      .command('audit')
      .summary('search, follow and verify the audit log (admin token)')
      .description('search, follow and verify the audit log (needs an admin token). -n/--namespace filters by namespace; COFFER_NAMESPACE does not'),
    'coffer audit search --action secret.read --since 1h',
    'coffer audit tail --follow',
    'coffer audit verify',
  );

  examples(
    withFilters(
      audit
        .command('search')
        .description('list matching audit entries, newest first')
        .option('--limit <n>', 'at most N entries', integer(1), 100),
    ).action(async (opts: FilterOptions & { limit: number }, cmd: Command) => {
      const ctx = Context.of(cmd);
      const entries = await newest(ctx.client({ auth: true }), filterOf(ctx, cmd, opts), opts.limit);
      ctx.print(entries, () => (entries.length ? table(entries.map(row), HEADER) : ''));
      if (!entries.length && ctx.globals.format === 'table') process.stderr.write('no matching audit entries\n');
    }),
    'coffer audit search --namespace payments-prod --path db/ --since 7d',
    'coffer audit search --identity root --outcome denied --since 2025-05-01T00:00:00Z --until 2025-05-02T00:00:00Z',
    'coffer audit search --action secret.write --limit 1000 --format json',
  );

  examples(
    withFilters(
      audit
        .command('tail')
        .summary('print the last entries, and with --follow new ones as they come')
        .description(
          'print the last N matching entries, oldest first; with --follow, keep printing new ones until interrupted (Ctrl-C, exit code 0). ' +
            'Here -n is the line count: filter by namespace with --namespace. --format json prints one JSON object per line',
        )
        .option('-n, --lines <n>', 'print the last N entries', integer(0), 20)
        .option('-f, --follow', 'poll for new entries (its own polling requests are not shown)')
        .option('--interval <seconds>', `seconds between polls with --follow (at most ${MAX_INTERVAL})`, integer(1), 2),
    ).action(async (opts: FilterOptions & { lines: number; follow?: boolean; interval: number }, cmd: Command) => {
      const ctx = Context.of(cmd);
      if (opts.interval > MAX_INTERVAL) throw usageError(`--interval is at most ${MAX_INTERVAL} seconds`);
      // Each poll is audited too: remember our own request ids so that following does not print itself.
      const own = new Set<string>();
      const recording: FetchFn = async (input, init) => {
        const response = await globalThis.fetch(input, init);
        const id = response.headers.get('x-request-id');
        if (id) own.add(id);
        // Bounded: an own request that the filters exclude is never seen, so never removed.
        if (own.size > 100) own.delete(own.values().next().value!);
        return response;
      };
      const client = ctx.client({ auth: true, fetch: opts.follow ? recording : undefined });
      const filter = filterOf(ctx, cmd, opts);
      const format = ctx.globals.format;
      // A stream: JSON lines, or one YAML document per entry.
      const print = (e: AuditEntry) =>
        process.stdout.write(format === 'json' ? `${JSON.stringify(e)}\n` : format === 'yaml' ? `---\n${yaml(e)}` : `${row(e).join('  ')}\n`);

      // One entry even for -n 0: following starts after the newest.
      const recent = await newest(client, filter, opts.follow ? Math.max(opts.lines, 1) : opts.lines);
      recent.slice(0, opts.lines).reverse().forEach(print);
      if (!opts.follow) return;

      // Ctrl-C ends following with exit code 0 (the first one only: a second one kills as usual).
      const interrupt = new AbortController();
      const interrupted = new Promise<void>((resolve) => interrupt.signal.addEventListener('abort', () => resolve()));
      process.once('SIGINT', () => {
        interrupt.abort();
        // Nor must it wait for a poll stuck on an unresponsive server (unref: no delay otherwise).
        setTimeout(() => process.exit(EXIT.ok), 1000).unref();
      });

      let cursor = recent[0]?.seq ?? 0;
      let failing = false;
      const poll = async () => {
        for await (const entry of client.audit.searchAll({ ...filter, order: 'asc', cursor, pageSize: MAX_AUDIT_PAGE })) {
          if (interrupt.signal.aborted) return;
          cursor = entry.seq;
          if (!own.delete(entry.request_id)) print(entry);
        }
      };
      while (!interrupt.signal.aborted) {
        await sleep(opts.interval * 1000, undefined, { signal: interrupt.signal }).catch(() => {});
        if (interrupt.signal.aborted) break;
        try {
          await Promise.race([poll(), interrupted]);
          if (failing) process.stderr.write('audit tail: reconnected\n');
          failing = false;
        } catch (err) {
          // A sealed, restarting or unreachable server is waited for; anything else (a revoked token) ends the tail.
          if (!(err instanceof CofferError) || exitCodeFor(err) !== EXIT.unavailable) throw err;
          if (!failing) process.stderr.write(`audit tail: ${err.message} (code ${err.code}); still trying every ${opts.interval} s\n`);
          failing = true;
        }
      }
    }),
    'coffer audit tail -n 50',
    'coffer audit tail -f --namespace payments-prod --action secret.read',
    'coffer audit tail -f --format json | jq -c "select(.outcome != \\"success\\")"',
  );

  examples(
    audit
      .command('verify')
      .summary('check the audit log is intact (exit code 1 when broken)')
      .description(
        'check the audit log\'s hash chain and signed checkpoints: exit code 0 when intact, 1 when broken ' +
          '(the first broken entry is reported on stderr; with --format json, the server\'s report goes to stdout)',
      )
      .action(async (_opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const result = await ctx.client({ auth: true }).audit.verify();
        const entries = result.entries_checked === 1 ? '1 entry' : `${result.entries_checked} entries`;
        const checkpoints = result.checkpoints_checked === 1 ? '1 checkpoint' : `${result.checkpoints_checked} checkpoints`;
        // Recovered entries (outcome "unknown") are requests whose own entry was never written.
        const recovered = result.recovered_entries > 0 ? `, ${result.recovered_entries} recovered from intents` : '';
        const pending = result.pending_intents > 0 ? `, ${result.pending_intents} intents pending` : '';
        ctx.print(result, () => (result.ok ? `audit log OK: ${entries}, ${checkpoints}, head seq ${result.head?.seq ?? '-'}${recovered}${pending}\n` : ''));
        if (result.ok) return;
        if (ctx.globals.format === 'table') {
          const broken = result.first_broken;
          process.stderr.write(broken ? `audit log BROKEN at entry ${broken.seq}: ${broken.reason}\n` : 'audit log BROKEN\n');
        }
        process.exitCode = EXIT.error;
      }),
    'coffer audit verify',
    'coffer audit verify --format json',
  );

  examples(
    audit
      .command('hash')
      .summary('print the HMAC the audit log records for a value, to search for it')
      .description(
        'print the HMAC under which the audit log records VALUE (a secret value, a token accessor), to search entries for it. ' +
          'VALUE is read from stdin when absent or "-" (minus one final newline; prompted for, unechoed, on a terminal)',
      )
      .argument('[value]', 'the value (prefer stdin: arguments show up in shell history and ps)')
      .action(async (valueArg: string | undefined, _opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true }); // before reading stdin: a missing token fails without waiting for input
        const value = valueArg === undefined || valueArg === '-' ? await readSecretFromStdin('Value to hash: ') : valueArg;
        // An empty stdin is far more often a broken pipe upstream than a wanted empty value.
        if (value === '') throw usageError('no value to hash');
        const hash = await client.audit.hash(value);
        ctx.print({ hash }, () => `${hash}\n`);
      }),
    'coffer audit hash                 # prompts for the value',
    'printf %s "$DB_PASSWORD" | coffer audit hash',
    'coffer audit search --action secret.write --format json | jq --arg h "$(coffer audit hash < pw.txt)" \'.[] | select(.hashed["data.password"] == $h)\'',
  );
}
