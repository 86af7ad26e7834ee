/**
 * One error type for everything a call can fail with, so callers need one `catch`:
 * server errors keep the server's status, code and request id; failures before a
 * response exists use status 0. Messages never contain a token or a secret value.
 */
import type { ErrorCode } from './api/errors.js';

/** Codes the server sends (the contract's), plus the client-side ones (status 0). Open-ended: newer servers may add codes. */
export type CofferErrorCode =
  | ErrorCode
  // client side (status 0), or a response that is not Coffer's ('unavailable' is both)
  | 'invalid_argument'
  | 'timeout'
  | 'invalid_response'
  | 'http_error'
  | (string & {});

export class CofferError extends Error {
  /** HTTP status, or 0 when no response was received (or the call was refused client-side). */
  readonly status: number;
  readonly code: CofferErrorCode;
  /** The server's X-Request-Id, to find the request in its log and audit trail. */
  readonly requestId: string | undefined;
  /** For 429 and 503 answers: how long the server asked the client to wait (its Retry-After), when it said. */
  retryAfterMs?: number;

  constructor(status: number, code: CofferErrorCode, message: string, requestId?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CofferError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

/** A bad argument caught before any request is sent. */
export const invalidArgument = (message: string): CofferError => new CofferError(0, 'invalid_argument', message);
