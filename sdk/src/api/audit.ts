/** `/v1/sys/audit`: the audit log as it is read and verified. */

/** Stable action names of audit entries; servers may add more. */
export type AuditAction =
  | 'secret.read'
  | 'secret.write'
  | 'secret.list'
  | 'secret.bulk_read'
  | 'secret.history'
  | 'secret.rollback'
  | 'secret.delete'
  | 'secret.undelete'
  | 'secret.destroy'
  | 'secret.purge'
  | 'namespace.create'
  | 'namespace.list'
  | 'namespace.read'
  | 'namespace.delete'
  | 'sys.init'
  | 'sys.unseal'
  | 'sys.seal'
  | 'sys.seal-status'
  | 'sys.audit'
  | 'sys.audit.verify'
  | 'sys.audit.hash'
  | 'auth.token.lookup-self'
  | 'auth.token.revoke-self'
  | 'unknown'
  | (string & {});

/** `unknown`: an entry recovered from the intent a request recorded before it ran; its own entry was never written. */
export type AuditOutcome = 'success' | 'denied' | 'error' | 'unknown';

export interface AuditIdentity {
  id: string;
  method: 'token' | 'none';
  display_name: string;
  /** HMAC of the token's accessor (find it with POST /v1/sys/audit/hash); never the accessor itself. */
  accessor_hmac?: string;
}

/** One request, as the audit log recorded it. Holds HMACs of sensitive values, never the values. */
export interface AuditEntry {
  /** Position in the log: increasing, without gaps. */
  seq: number;
  time: string;
  /** The X-Request-Id the caller got. */
  request_id: string;
  /** null when the request carried no valid token. */
  identity: AuditIdentity | null;
  action: AuditAction;
  namespace: string | null;
  path: string | null;
  version: number | null;
  outcome: AuditOutcome;
  /** The status the caller got; 0 when not known (outcome `unknown`). */
  status: number;
  error_code: string | null;
  /** The caller's address. */
  client: string | null;
  /** HMACs of sensitive request fields, e.g. {"data.password": "hmac-sha256:…"}. */
  hashed: Record<string, string>;
  /** The handler's status when the caller got another (the audit log refused the response with 503; the change, if any, took effect). */
  handler_status?: number;
  /** How many things a bulk operation moved (namespace export and import): numbers, never names or values. */
  counts?: Record<string, number>;
  /** Why the entry is not a plain record of a response: recovered from an intent, refused by an audit sink, or an audit incident. */
  reason?: string;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** Pass back as `cursor` (with the same order) for the next page; null on the last. */
  next_cursor: number | null;
}

export interface AuditVerifyResult {
  ok: boolean;
  entries_checked: number;
  checkpoints_checked: number;
  /** The newest entry; null for an empty log. */
  head: { seq: number; hash: string } | null;
  /** The first entry or checkpoint that fails its check. */
  first_broken: { seq: number; reason: string } | null;
  /** Entries recovered from intents (outcome `unknown`): requests whose own entry was never written. */
  recovered_entries: number;
  /** Intents not yet turned into entries: requests in flight, or ones the recovery pass has not reached yet. */
  pending_intents: number;
}
