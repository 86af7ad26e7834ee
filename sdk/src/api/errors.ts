/**
 * The error codes of the wire: every failure the server answers with is
 * `{"error": {"code", "message", "requestId"}}`, and `code` is one of these.
 * A closed list: the server's errors are typed with it, so a new code is added
 * here, where clients see it, or it does not compile.
 */
export const ERROR_CODES = [
  'invalid_request',
  'invalid_json',
  'invalid_shares',
  'unauthenticated',
  'permission_denied',
  'not_found',
  'method_not_allowed',
  'conflict',
  'namespace_disabled',
  'already_exists',
  'cas_mismatch',
  'already_initialized',
  'not_initialized',
  'payload_too_large',
  'unsupported_media_type',
  'sealed',
  'unavailable',
  'integrity_error',
  // seal, BYOK and escrow
  'unsupported_algorithm',
  'invalid_key_material',
  'expired',
  'gone',
  // identity
  'login_failed',
  'rate_limited',
  'not_renewable',
  // backup and restore
  'invalid_backup',
  'unsupported_backup',
  'seal_mismatch',
  // namespace export and import
  'invalid_bundle',
  'wrong_import_key',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** The body of every non-2xx answer. `requestId` is the X-Request-Id of the request. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string };
}
