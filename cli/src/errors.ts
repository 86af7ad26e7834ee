/**
 * Exit codes and the one-line error report. Scripts branch on the exit code, so
 * each class of failure keeps its own number.
 */
import { CofferError } from '@coffer/sdk';
import { CommanderError } from 'commander';

export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  /** 401/403: no token, a bad token, or not allowed. */
  denied: 3,
  notFound: 4,
  /** 503 (sealed) or no answer from the server. */
  unavailable: 5,
} as const;

/** A failure found by the CLI itself, with the exit code it maps to. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

export const usageError = (message: string) => new CliError(message, EXIT.usage);

/** A login refused because of too many failures (the login guard's lockout), not some other rate limit. */
const isLockout = (err: CofferError) => err.code === 'rate_limited' && /login attempts/.test(err.message);

export function exitCodeFor(err: CofferError): number {
  if (err.code === 'invalid_argument') return EXIT.usage; // refused by the SDK before sending
  if (err.status === 401 || err.status === 403 || isLockout(err)) return EXIT.denied;
  if (err.status === 404) return EXIT.notFound;
  if (err.status === 503 || err.code === 'unavailable' || err.code === 'timeout') return EXIT.unavailable;
  return EXIT.error;
}

/**
 * The server's message in the CLI's terms: its messages are written for API
 * users and name routes (POST /v1/sys/unseal, force=true); a CLI user needs the
 * command or flag instead.
 */
export function cliMessage(err: CofferError): string {
  if (err.code === 'sealed') return 'Coffer is sealed: run `coffer operator unseal` (each operator with a share, or --shares-file FILE)';
  if (err.code === 'not_initialized') return 'Coffer is not initialised yet: run `coffer operator init`';
  if (isLockout(err)) {
    const wait = err.retryAfterMs !== undefined ? `${Math.max(1, Math.ceil(err.retryAfterMs / 1000))} s` : 'a while';
    return `too many login attempts: wait ${wait} and try again (each further failure doubles a lockout; an admin can lift a user's with \`coffer user unlock NAME\`)`;
  }
  if (err.code === 'unavailable' && err.status === 0 && /: ECONNREFUSED$/.test(err.message)) {
    return `${err.message} (is coffer-server running there? Set the address with --addr or COFFER_ADDR)`;
  }
  return err.message
    .replace(/delete them first or pass force=true$/, 'delete them first or use --force')
    .replace(/\(cancel with DELETE \/v1\/namespaces\/([^/\s]+)\/shred\)/, '(cancel with `coffer ns shred cancel $1`)')
    .replace('(POST /v1/sys/rotate-root first)', '(run `coffer operator rotate-root` first)')
    .replace('(with Shamir, POST /v1/sys/rotate-root makes a new one)', '(with Shamir, `coffer operator rotate-root` makes a new one)')
    .replace(/\(PUT \/v1\/auth\/jwt\/issuers\/(\S+) first\)/, '(create the issuer first: `coffer jwt issuer $1 --issuer URL ...`)');
}

/**
 * Reports `err` on stderr (with `hint`, what to do about it, on a line of its own) and returns the exit code. Messages come from the server,
 * the SDK or this CLI, none of which put tokens or secret values in them; errors
 * from elsewhere are reduced to their message.
 */
export function reportError(err: unknown, stderr: (text: string) => void, hint?: string): number {
  if (err instanceof CommanderError) {
    // commander has already printed its message (or the help text).
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof CofferError) {
    const details = [`code ${err.code}`, err.requestId ? `request ${err.requestId}` : ''].filter(Boolean).join(', ');
    stderr(`Error: ${cliMessage(err)} (${details})\n`);
    if (hint) stderr(`Hint: ${hint}\n`);
    return exitCodeFor(err);
  }
  if (err instanceof CliError) {
    stderr(`Error: ${err.message}${err.code ? ` (code ${err.code})` : ''}\n`);
    return err.exitCode;
  }
  stderr(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
  return EXIT.error;
}
