/** `coffer status` and `coffer operator init|unseal|seal`. */
import type { SealStatus } from '@coffer/sdk';
import type { Command } from 'commander';
import { Context } from '../context.js';
import { EXIT, usageError } from '../errors.js';
import { readStdin, promptHidden } from '../input.js';
import { fields, table } from '../output.js';
import { examples, integer } from './common.js';

function renderStatus(s: SealStatus, address: string): string {
  return fields([
    ['Address', address],
    ['Initialized', s.initialized],
    ['Sealed', s.sealed],
    ['Seal type', s.seal_type],
    ['Shares', s.shares],
    ['Threshold', s.threshold],
    ['Unseal progress', s.sealed && s.threshold ? `${s.progress}/${s.threshold}` : null],
  ]);
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

  examples(
    operator
      .command('init')
      .description('initialise a new server: prints the unseal shares and the root token, once')
      .option('--shares <n>', 'number of unseal shares', integer(1), 5)
      .option('--threshold <m>', 'shares needed to unseal', integer(1), 3)
      .action(async (opts: { shares: number; threshold: number }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const result = await ctx.client({ auth: false }).sys.init({ shares: opts.shares, threshold: opts.threshold });
        ctx.print(result, () =>
          [
            table([...result.shares.map((share, i) => [`Unseal share ${i + 1}`, share]), ['Root token', result.root_token]]),
            `\nAny ${result.threshold} of these ${result.shares.length} shares unseal Coffer. Give each share to a different`,
            'operator and keep the root token safe: none of them is shown again.\n',
          ].join('\n'),
        );
      }),
    'coffer operator init',
    'coffer operator init --shares 3 --threshold 2 --format json > init.json',
  );

  examples(
    operator
      .command('unseal')
      .description('submit one unseal share; read from stdin when SHARE is absent or "-" (prompted for, unechoed, on a terminal)')
      .argument('[share]', 'the share (prefer stdin: arguments show up in shell history and ps)')
      .option('--reset', 'abandon the unseal attempt in progress')
      .action(async (shareArg: string | undefined, opts: { reset?: boolean }, cmd: Command) => {
        const ctx = Context.of(cmd);
        const client = ctx.client({ auth: false });
        let status: SealStatus;
        if (opts.reset) {
          if (shareArg !== undefined) throw usageError('--reset takes no share');
          status = await client.sys.resetUnseal();
        } else {
          const share = shareArg === undefined || shareArg === '-' ? await readShare() : shareArg;
          if (!share) throw usageError('no unseal share given');
          status = await client.sys.unseal(share);
        }
        ctx.print(status, () => renderStatus(status, ctx.address()));
      }),
    'coffer operator unseal            # prompts for the share',
    'coffer operator unseal - < share-1.txt',
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
}

async function readShare(): Promise<string> {
  return (process.stdin.isTTY ? await promptHidden('Unseal share: ') : await readStdin()).trim();
}
