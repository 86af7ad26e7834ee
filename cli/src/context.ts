/**
 * What every command needs: the global options, an SDK client and output. The
 * token is looked up only by commands that send one, so `coffer status` works
 * with a misconfigured token file.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CofferClient, checkNamespace, type FetchFn } from '@coffer/sdk';
import type { Command } from 'commander';
import { CliError, EXIT, usageError } from './errors.js';
import { json } from './output.js';

export const CLI_VERSION = '0.1.0';

export type Format = 'table' | 'json';

export interface GlobalOptions {
  addr: string;
  token?: string;
  format: Format;
  namespace?: string;
}

export class Context {
  private constructor(readonly globals: GlobalOptions) {}

  /** The context of the command whose action is running (global options may follow the subcommand). */
  static of(cmd: Command): Context {
    return new Context(cmd.optsWithGlobals<GlobalOptions>());
  }

  /** A client; with `auth`, one that carries the token, which is then required. `fetch` lets a command watch its responses. */
  client(options: { auth: boolean; fetch?: FetchFn }): CofferClient {
    const token = options.auth ? this.token() : undefined;
    return new CofferClient({ address: this.globals.addr, token, userAgent: `coffer-cli/${CLI_VERSION}`, fetch: options.fetch });
  }

  /** The namespace for secret commands (--namespace / COFFER_NAMESPACE). */
  namespace(): string {
    const name = this.globals.namespace;
    if (!name) throw usageError('no namespace: pass -n/--namespace NAME, set COFFER_NAMESPACE, or use a coffer://namespace/path reference');
    return checkNamespace(name);
  }

  /** JSON of `value` with --format json, else the text `render` returns. */
  print(value: unknown, render: () => string): void {
    process.stdout.write(this.globals.format === 'json' ? json(value) : render());
  }

  /** --token, then COFFER_TOKEN (commander folds both into one option), then the token file. */
  private token(): string {
    const token = this.globals.token || readTokenFile(tokenFilePath());
    if (!token) {
      throw new CliError(`no token: pass --token, set COFFER_TOKEN, or store it in ${tokenFilePath()} (mode 0600)`, EXIT.denied);
    }
    return token;
  }
}

/** $XDG_CONFIG_HOME/coffer/token, or ~/.config/coffer/token. */
export function tokenFilePath(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'coffer', 'token');
}

/**
 * The token file's content, if the file exists. A file other users can read is
 * refused (as ssh refuses such keys): the token may already be compromised, and
 * using it quietly would hide that.
 */
function readTokenFile(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read the token file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    // fstat on the opened descriptor: the file checked is the file read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new CliError(`the token file ${file} is not a regular file`);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new CliError(`the token file ${file} is accessible to other users (mode ${mode}); run: chmod 600 ${file}`);
    }
    return readFileSync(fd, 'utf8').trim() || undefined;
  } finally {
    closeSync(fd);
  }
}
