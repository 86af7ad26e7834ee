/** `coffer status` and `coffer operator init|unseal|seal`. */
import { open, unlink } from 'node:fs/promises';
import type { InitResult, RotateRootResult, SealStatus } from '@coffer/sdk';
import { Option, type Command } from 'commander';
import { Context } from '../context.js';
import { CliError, EXIT, usageError } from '../errors.js';
import { readShares, readStdin, promptHidden } from '../input.js';
import { fields, green, red, table, yellow } from '../output.js';
import { registerBackup } from './backup.js';
import { examples, integer, plural } from './common.js';
import { writeNewPrivateFile } from '../private-file.js';

function renderStatus(s: SealStatus, address: string): string {
  return fields([
    ['Address', address],
    ['Initialized', s.initialized ? 'true' : yellow('false')],
    ['Sealed', s.sealed ? red('true') : green('false')],
    ['Seal type', s.seal_type],
    ['Shares', s.shares],
    ['Threshold', s.threshold],
    ['Unseal progress', s.sealed && s.threshold ? `${s.progress}/${s.threshold}` : null],
    ['Recovery seal', s.recovery_seal ?? null],
    ['Root key version', s.root_version ?? null],
    ['Seal error', s.seal_error ?? null],
  ]);
}

/** Shamir: unseal shares; PKCS#11: recovery shares (the HSM holds the root key). */
function renderInit(result: InitResult): string {
  const recovery = 'recovery_shares' in result;
  const shares = recovery ? result.recovery_shares : result.shares;
  const threshold = recovery ? result.recovery_threshold : result.threshold;
  const kind = recovery ? 'Recovery share' : 'Unseal share';
  return [
    table([...shares.map((share, i) => [`${kind} ${i + 1}`, share]), ['Root token', result.root_token]]),
    recovery
      ? `\nThe HSM holds the root key and unseals Coffer at start. Any ${threshold} of these ${shares.length} recovery shares\nauthorise seal migration and root token regeneration, and unseal after \`coffer operator seal\`. Give each share`
      : `\nAny ${threshold} of these ${shares.length} shares unseal Coffer. Give each share`,
    'to a different operator and keep the root token safe: none of them is shown again.\n',
  ].join('\n');
}

function renderRotation(r: RotateRootResult): string {
  const head = fields([
    ['Seal type', r.seal_type],
    ['Root key version', r.root_version],
    ['State', r.state ?? null],
    ['Key label', r.key_label ?? null],
    ['Rewrapped', r.rewrapped ? `${r.rewrapped.keks} KEKs, ${r.rewrapped.system_keys} system keys, ${r.rewrapped.import_keys} import keys` : null],
  ]);
  if (!r.shares) return head;
  return [
    head,
    table(r.shares.map((share, i) => [`New share ${i + 1}`, share])),
    `Nothing has changed yet: the current shares still unseal. Give each new share to its holder, then`,
    `run \`coffer operator rotate-root verify\` with ${r.threshold} of the NEW shares; only then do they take effect.\n`,
  ].join('\n');
}

export function registerSys(program: Command): void {
  examples(
    program
      .command('status')
      .description('show whether the server is initialised and unsealed (exit code 5 while sealed)')
      .action(async (_opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const status = await ctx.client({ auth: false }).sys.status();
        ctx.print(status, () => renderStatus(status, ctx.address()));
        // Like `vault status`: scripts can wait for an unsealed server on the exit code alone.
        if (status.sealed) process.exitCode = EXIT.unavailable;
      }),
    'coffer status',
    'coffer status --format json',
  );

  const operator = examples(
    program.command('operator').description('initialise, unseal and seal the server'),
    'coffer operator init --shares 5 --threshold 3',
    'coffer operator unseal < share-1.txt',
  );

  registerBackup(operator);

  examples(
    operator
      .command('init')
      .description('initialise a new server: prints the unseal shares (PKCS#11 seal: recovery shares) and the root token, once')
      .option('--shares <n>', 'number of unseal shares', integer(1), 5)
      .option('--threshold <m>', 'shares needed to unseal', integer(1), 3)
      .option('--shares-out <file>', 'write the shares to FILE (created mode 0600, never overwritten; one per line) instead of stdout')
      .action(async (opts: { shares: number; threshold: number; sharesOut?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        // The server takes shares/threshold as the recovery share counts under the PKCS#11 seal.
        const init = () => ctx.client({ auth: false }).sys.init({ shares: opts.shares, threshold: opts.threshold });
        if (opts.sharesOut === undefined) {
          const result = await init();
          ctx.print(result, () => renderInit(result));
          return;
        }
        const file = opts.sharesOut;
        const result = await writeNewPrivateFile(file, async () => {
          const result = await init();
          const shares = 'recovery_shares' in result ? result.recovery_shares : result.shares;
          return { content: `${shares.join('\n')}\n`, result };
        });
        // The shares went to the file only; the root token is still shown once, here.
        const { shares: _s, recovery_shares: _r, ...rest } = result as typeof result & { shares?: string[]; recovery_shares?: string[] };
        const count = 'recovery_shares' in result ? result.recovery_shares.length : result.shares.length;
        ctx.print({ ...rest, shares_file: file }, () =>
          table([['Root token', result.root_token]]) +
          `\n${count} ${'recovery_shares' in result ? 'recovery' : 'unseal'} shares written to ${file} (mode 0600), one per line.\n` +
          `Give each line to a different operator and delete the file; unseal with \`coffer operator unseal\` (or --shares-file).\n` +
          'Keep the root token safe: it is not shown again.\n',
        );
      }),
    'coffer operator init',
    'coffer operator init --shares 5 --threshold 3 --shares-out shares.txt',
    'coffer operator init --shares 3 --threshold 2 --format json > init.json',
  );

  examples(
    operator
      .command('unseal')
      .description(
        'submit one unseal share, read from stdin when SHARE is absent or "-" (prompted for, unechoed, on a terminal); ' +
          'or every share of --shares-file, one after the other, until the server is unsealed',
      )
      .argument('[share]', 'the share (prefer stdin: arguments show up in shell history and ps)')
      .option('--shares-file <file>', 'shares, one per line ("-" for stdin), applied in turn')
      .option('--reset', 'abandon the unseal attempt in progress')
      .action(async (shareArg: string | undefined, opts: { reset?: boolean; sharesFile?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: false });
        let status: SealStatus;
        if (opts.sharesFile !== undefined && (opts.reset || shareArg !== undefined)) throw usageError('--shares-file takes no SHARE argument and no --reset');
        if (opts.reset) {
          if (shareArg !== undefined) throw usageError('--reset takes no share');
          status = await client.sys.resetUnseal();
        } else if (opts.sharesFile !== undefined) {
          const shares = await readShares(opts.sharesFile, 1, 'Unseal share');
          status = await client.sys.unseal(shares[0]!);
          let used = 1;
          for (const share of shares.slice(1)) {
            if (!status.sealed) break;
            status = await client.sys.unseal(share);
            used++;
          }
          if (status.sealed && ctx.globals.format === 'table') {
            const missing = (status.threshold ?? 0) - status.progress;
            process.stderr.write(`Applied ${plural(used, 'share')}; still sealed: ${missing > 0 ? `${plural(missing, 'more share')} needed` : 'the shares were not enough'}.\n`);
          }
        } else {
          const share = shareArg === undefined || shareArg === '-' ? await readShare() : shareArg;
          if (!share) throw usageError('no unseal share given');
          status = await client.sys.unseal(share);
        }
        ctx.print(status, () => renderStatus(status, ctx.address()));
      }),
    'coffer operator unseal            # prompts for the share',
    'coffer operator unseal - < share-1.txt',
    'coffer operator unseal --shares-file shares.txt',
    'coffer operator unseal --reset',
  );

  examples(
    operator
      .command('seal')
      .description('seal the server: it forgets its keys until unsealed again (needs an admin token)')
      .action(async (_opts: object, cmd: Command) => {
        const ctx = Context.of(cmd);
        const status = await ctx.client({ auth: true }).sys.seal();
        ctx.print(status, () => renderStatus(status, ctx.address()));
      }),
    'coffer operator seal',
  );

  const rotateRoot = examples(
    operator
      .command('rotate-root')
      .description(
        'rotate the root key (admin). PKCS#11 seal: done at once. Shamir seal: give the threshold of the CURRENT shares ' +
          '(stdin, --shares-file or prompted for); prints new shares that take effect only after `rotate-root verify`',
      )
      .option('--shares-file <file>', 'current unseal shares, one per line ("-" for stdin)')
      .option('--new-shares <n>', 'number of new shares (default: as now)', integer(1))
      .option('--new-threshold <m>', 'new threshold (default: as now)', integer(1))
      .option('--new-shares-out <file>', 'write the new shares to FILE (mode 0600, one per line) instead of stdout')
      .action(async (opts: { sharesFile?: string; newShares?: number; newThreshold?: number; newSharesOut?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const status = await client.sys.status();
        let shares: string[] | undefined;
        if (status.seal_type !== 'pkcs11') shares = await readShares(opts.sharesFile, status.threshold ?? 1, 'Current unseal share');
        // Created (0600, never overwritten) before the request: the new shares must have somewhere to go.
        let out;
        if (opts.newSharesOut) {
          try {
            out = await open(opts.newSharesOut, 'wx', 0o600);
          } catch (err) {
            throw new CliError(`cannot create ${opts.newSharesOut} (${(err as NodeJS.ErrnoException).code ?? 'unwritable'}); it must not exist yet`);
          }
        }
        let written = false;
        try {
          const result = await client.sys.rotateRoot({ shares, new_shares: opts.newShares, new_threshold: opts.newThreshold });
          if (out && result.shares) {
            await out.writeFile(`${result.shares.join('\n')}\n`);
            written = true;
            const { shares: _written, ...rest } = result;
            ctx.print({ ...rest, shares_file: opts.newSharesOut }, () =>
              renderRotation(rest) + `New shares written to ${opts.newSharesOut}; hand them out, then \`coffer operator rotate-root verify\`.\n`,
            );
            return;
          }
          ctx.print(result, () => renderRotation(result));
        } finally {
          await out?.close();
          // A refused rotation (or the PKCS#11 seal, which has no shares) leaves no empty file behind.
          if (out && !written) await unlink(opts.newSharesOut!).catch(() => undefined);
        }
      }),
    'coffer operator rotate-root < current-shares.txt',
    'coffer operator rotate-root --shares-file current-shares.txt --new-shares 5 --new-threshold 3 --new-shares-out new-shares.txt',
    'coffer operator rotate-root            # PKCS#11 seal: no shares needed',
  );

  examples(
    rotateRoot
      .command('verify')
      .description('Shamir rotation, step 2: the threshold of the NEW shares (stdin, --shares-file or prompted for); then only they unseal')
      .option('--shares-file <file>', 'new shares, one per line ("-" for stdin)')
      .option('--threshold <m>', 'how many shares to prompt for on a terminal (default: the current threshold)', integer(1))
      .action(async (opts: { sharesFile?: string; threshold?: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const count = opts.threshold ?? (opts.sharesFile === undefined && process.stdin.isTTY ? ((await client.sys.status()).threshold ?? 1) : 1);
        const shares = await readShares(opts.sharesFile, count, 'New share');
        const result = await client.sys.verifyRotateRoot(shares);
        ctx.print(result, () => renderRotation(result) + 'The new shares are in effect; the old ones no longer unseal.\n');
      }),
    'coffer operator rotate-root verify --shares-file new-shares.txt',
    'coffer operator rotate-root verify     # prompts for the new shares',
  );

  examples(
    operator
      .command('seal-migrate')
      .description(
        'migrate the seal (admin, unsealed): to pkcs11 with the threshold of unseal shares (they become recovery shares), ' +
          'to shamir with the recovery shares (they become unseal shares); shares from stdin, --shares-file or prompted for',
      )
      .addOption(new Option('--to <seal>', 'the seal to migrate to').choices(['shamir', 'pkcs11']).makeOptionMandatory())
      .option('--shares-file <file>', 'shares, one per line ("-" for stdin)')
      .action(async (opts: { to: 'shamir' | 'pkcs11'; sharesFile?: string }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: true });
        const status = await client.sys.status();
        const shares = await readShares(opts.sharesFile, status.threshold ?? 1, opts.to === 'pkcs11' ? 'Unseal share' : 'Recovery share');
        const result = await client.sys.sealMigrate(opts.to, shares);
        ctx.print(result, () =>
          fields([
            ['Seal type', result.seal_type],
            ['Root key version', result.root_version],
            ['Rewrapped', `${result.rewrapped.keks} KEKs, ${result.rewrapped.system_keys} system keys, ${result.rewrapped.import_keys} import keys`],
          ]) + `\n${result.message}\n`,
        );
      }),
    'coffer operator seal-migrate --to pkcs11 < unseal-shares.txt',
    'coffer operator seal-migrate --to shamir --shares-file recovery-shares.txt',
  );

  examples(
    operator
      .command('generate-root')
      .description(
        'make a new root token from the threshold of unseal shares (PKCS#11 seal: recovery shares), read from stdin, ' +
          '--shares-file or prompted for; prints the token once (no token needed)',
      )
      .option('--shares-file <file>', 'shares, one per line ("-" for stdin)')
      .option('--reset', 'abandon a generation in progress')
      .action(async (opts: { sharesFile?: string; reset?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: false });
        if (opts.reset) {
          const progress = await client.sys.resetGenerateRoot();
          ctx.print(progress, () => fields([['Progress', `${progress.progress}/${progress.threshold}`]]));
          return;
        }
        const status = await client.sys.status();
        const shares = await readShares(opts.sharesFile, status.threshold ?? 1, status.recovery_seal ? 'Recovery share' : 'Unseal share');
        let last = await client.sys.generateRoot(shares[0]!);
        for (const share of shares.slice(1)) {
          if (last.complete) break;
          last = await client.sys.generateRoot(share);
        }
        if (!last.complete || !last.root_token) {
          ctx.print(last, () => fields([['Progress', `${last.progress}/${last.threshold}`]]));
          throw new CliError(`${last.threshold - last.progress} more share(s) needed; run it again with them (or --reset)`);
        }
        const token = last.root_token;
        ctx.print(last, () => `${token}\n`);
        if (ctx.globals.format === 'table') process.stderr.write('A new root token: keep it safe, it is not shown again; revoke it when done.\n');
      }),
    'coffer operator generate-root < shares.txt > root-token.txt',
    'coffer operator generate-root          # prompts for the shares',
    'coffer operator generate-root --reset',
  );
}

async function readShare(): Promise<string> {
  return (process.stdin.isTTY ? await promptHidden('Unseal share: ') : await readStdin()).trim();
}
