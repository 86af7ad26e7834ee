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

export function exitCodeFor(err: CofferError): number {
  if (err.code === 'invalid_argument') return EXIT.usage; // refused by the SDK before sending
  if (err.status === 401 || err.status === 403) return EXIT.denied;
  if (err.status === 404) return EXIT.notFound;
  if (err.status === 503 || err.code === 'unavailable' || err.code === 'timeout') return EXIT.unavailable;
  return EXIT.error;
}

/**
 * Reports `err` on stderr and returns the exit code. Messages come from the server,
 * the SDK or this CLI, none of which put tokens or secret values in them; errors
 * from elsewhere are reduced to their message.
 */
export function reportError(err: unknown, stderr: (text: string) => void): number {
  if (err instanceof CommanderError) {
    // commander has already printed its message (or the help text).
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof CofferError) {
    const details = [`code ${err.code}`, err.requestId ? `request ${err.requestId}` : ''].filter(Boolean).join(', ');
    stderr(`Error: ${err.message} (${details})\n`);
    return exitCodeFor(err);
  }
  if (err instanceof CliError) {
    stderr(`Error: ${err.message}${err.code ? ` (code ${err.code})` : ''}\n`);
    return err.exitCode;
  }
  stderr(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
  return EXIT.error;
}
