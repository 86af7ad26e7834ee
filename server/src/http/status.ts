/**
 * The one place an error code becomes an HTTP status. Domain code raises
 * `CofferError(code, …)` and never picks a status: a Vault-compatible API, a
 * gRPC front or a CLI can map the same failures their own way. The record is
 * total over the wire contract's codes, so a new code does not compile until
 * it has a status here.
 */
import type { ErrorCode } from '@coffer/sdk/api';
import { CofferError } from '../errors.js';

export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  invalid_request: 400,
  invalid_json: 400,
  invalid_shares: 400,
  not_initialized: 400,
  not_renewable: 400,
  unsupported_algorithm: 400,
  invalid_key_material: 400,
  invalid_backup: 400,
  unsupported_backup: 400,
  invalid_bundle: 400,
  wrong_import_key: 400,
  unauthenticated: 401,
  login_failed: 401,
  permission_denied: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  namespace_disabled: 409,
  already_exists: 409,
  cas_mismatch: 409,
  already_initialized: 409,
  seal_mismatch: 409,
  expired: 410,
  gone: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  integrity_error: 500,
  sealed: 503,
  unavailable: 503,
};

/**
 * An error the HTTP edge itself raises with a status read off the wire (a body
 * parser's 4xx), where the code alone would lose it.
 */
export class EdgeError extends CofferError {
  constructor(
    readonly status: number,
    code: CofferError['code'],
    message: string,
  ) {
    super(code, message);
    this.name = 'EdgeError';
  }
}

export const httpStatus = (err: CofferError): number => (err instanceof EdgeError ? err.status : HTTP_STATUS[err.code]);
