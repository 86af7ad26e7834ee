/**
 * Errors that cross the service boundary carry a stable machine-readable code
 * from the wire contract's closed list; which HTTP status (or, later, which
 * Vault-compatible error body) a code becomes is the edge's business
 * (http/status.ts), never the domain's. Messages are written for humans and
 * never contain a secret value, token or key.
 */
import type { ErrorCode } from '@coffer/sdk/api';

export type { ErrorCode };

export class CofferError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    /** Sent as Retry-After (429 and 503). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'CofferError';
  }
}

export const badRequest = (message: string, details?: unknown) =>
  new CofferError('invalid_request', message, details);
export const notFound = (message: string) => new CofferError('not_found', message);
export const conflict = (code: 'conflict' | 'already_exists' | 'cas_mismatch' | 'already_initialized', message: string) =>
  new CofferError(code, message);
/** A namespace scheduled for crypto-shredding: every data operation is refused until the schedule is cancelled. */
export const namespaceDisabled = (name: string, deletionDate: Date) =>
  new CofferError('namespace_disabled',
    `namespace "${name}" is disabled: its keys are scheduled for destruction at ${deletionDate.toISOString()} (cancel with DELETE /v1/namespaces/${name}/shred)`,
  );
export const sealedError = () =>
  new CofferError('sealed', 'Coffer is sealed: unseal it with the operators\' shares (POST /v1/sys/unseal)');

/**
 * Raised when an authenticated decryption fails: a ciphertext, wrapped key or
 * its context (AAD) was altered in storage. It is never the caller's fault, so
 * it is the one deliberate 500 besides bugs; the message names no key material.
 */
export class IntegrityError extends CofferError {
  constructor(what: string) {
    super('integrity_error', `integrity check failed for ${what}: stored data was altered or moved`);
    this.name = 'IntegrityError';
  }
}

/** A setting (or a file it names) that cannot be used; the server refuses to start, or keeps what it had. */
export class ConfigError extends Error {}
