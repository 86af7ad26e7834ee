/**
 * CofferClient: typed methods over the `/v1` API, grouped as the API is
 * (`sys`, `token`, `namespaces`, `secrets`, `audit`). Every name is validated before a
 * request is built, so a typo fails fast with a clear message instead of
 * reaching a different URL. Methods are `async` so that such a refusal is a
 * rejected promise, like every other failure, never a synchronous throw.
 */
import { AuthApi, TokenApi, TokenRenewer, type AuthInfo, type RenewerOptions } from './auth.js';
import { AdminApi } from './admin.js';
import { ByokApi, EscrowApi, type GenerateRootProgress, type KekRotation, type KekStatus, type RotateRootResult, type SealMigrateResult, type ShredSchedule } from './keys.js';
import { restoreEnvelopeLine, restoreUpload, type BackupVerifyResult, type RestoreResult } from './api/backup.js';
import type { ImportParams } from './api/keys.js';
import type { NamespaceImportResult } from './api/namespace-transfer.js';
import { CofferError, invalidArgument } from './errors.js';
import { KmsApi } from './kms.js';
import { checkNamespace, checkSecretPath, normalizeFolder } from './names.js';
import { Transport, type FetchFn, type Query, type RetryInfo } from './transport.js';
import type {
  AuditEntry,
  AuditPage,
  AuditQuery,
  AuditVerifyResult,
  BulkPage,
  BulkResult,
  HealthStatus,
  InitResult,
  NamespaceDeleteResult,
  NamespaceDetail,
  NamespacePage,
  NamespaceSummary,
  PageOptions,
  PurgeResult,
  PutOptions,
  SealStatus,
  SecretData,
  SecretHistory,
  SecretListPage,
  SecretVersion,
  VersionsResult,
  WriteResult,
} from './types.js';

/** The backup file's media type (api/backup.ts; not imported: that module needs node:crypto). */
const BACKUP_MEDIA_TYPE = 'application/x-ndjson';

export const SDK_VERSION = '0.1.0';

/** The failover contract's defaults (README "Failover"): up to 30 retries within 30 s (the budget binds first). */
export const DEFAULT_RETRIES = 30;
export const DEFAULT_RETRY_BUDGET_MS = 30_000;

export interface CofferClientOptions {
  /** Base URL of the server, e.g. http://127.0.0.1:8200 (a path prefix is kept). */
  address: string;
  token?: string;
  /** Per attempt, including reading the body. Default 30 s. */
  timeoutMs?: number;
  /**
   * Most extra attempts: for idempotent calls on network errors, timeouts, 429, 502, 503 and 504;
   * for any call whose connection was refused (it never reached a server). Default 30; the budget usually ends retrying first.
   */
  retries?: number;
  /**
   * No retry starts later than this after the first attempt (0: fail at the first error).
   * Default 30 s: a database restart or a server's death behind a load balancer.
   */
  retryBudgetMs?: number;
  /** Base delay of the exponential backoff. Default 250 ms. */
  retryBaseDelayMs?: number;
  /** Called before each retry's wait, with the error and the delay (a CLI tells its user it is waiting). */
  onRetry?: (retry: RetryInfo) => void;
  fetch?: FetchFn;
  /** Prepended to the User-Agent, e.g. "coffer-cli/0.1.0". */
  userAgent?: string;
}

const ns = (name: string) => `/v1/namespaces/${checkNamespace(name)}`;
const secretUrl = (namespace: string, path: string, action = '') =>
  `/v1/secrets/${checkNamespace(namespace)}/${checkSecretPath(path)}${action}`;

export class CofferClient {
  readonly sys: SysApi;
  /** Logins: each switches this client to the token it returns. */
  readonly auth: AuthApi;
  readonly token: TokenApi;
  /** Policies, users, approles, JWT issuers and roles (admin token). */
  readonly admin: AdminApi;
  readonly namespaces: NamespacesApi;
  readonly secrets: SecretsApi;
  readonly audit: AuditApi;
  /** Bring your own key: import parameters and imports (namespace KEKs; the root key under the PKCS#11 seal). */
  readonly byok: ByokApi;
  /** Two-person escrow exports of namespace KEK versions. */
  readonly escrow: EscrowApi;
  /** Named keys for applications: encrypt/decrypt, data keys, sign/verify, HMAC, envelopes of any size. */
  readonly kms: KmsApi;
  private readonly http: Transport;

  constructor(options: CofferClientOptions) {
    this.http = new Transport({
      address: options.address,
      token: options.token,
      timeoutMs: options.timeoutMs ?? 30_000,
      retries: options.retries ?? DEFAULT_RETRIES,
      retryBudgetMs: options.retryBudgetMs ?? DEFAULT_RETRY_BUDGET_MS,
      retryBaseDelayMs: options.retryBaseDelayMs ?? 250,
      retryMaxDelayMs: 5_000,
      fetch: options.fetch ?? globalThis.fetch,
      userAgent: [options.userAgent, `coffer-sdk/${SDK_VERSION}`].filter(Boolean).join(' '),
      ...(options.onRetry ? { onRetry: options.onRetry } : {}),
    });
    this.sys = new SysApi(this.http);
    this.auth = new AuthApi(this.http, options.fetch ?? globalThis.fetch);
    this.token = new TokenApi(this.http);
    this.admin = new AdminApi(this.http);
    this.namespaces = new NamespacesApi(this.http);
    this.secrets = new SecretsApi(this.http);
    this.audit = new AuditApi(this.http);
    this.byok = new ByokApi(this.http);
    this.escrow = new EscrowApi(this.http);
    this.kms = new KmsApi(this.http);
  }

  /**
   * A client configured like the CLI from the environment: COFFER_ADDR (default
   * http://127.0.0.1:8200) and COFFER_TOKEN; `options` override both.
   */
  static fromEnv(options: Partial<CofferClientOptions> = {}, env: Record<string, string | undefined> = process.env): CofferClient {
    return new CofferClient({ address: env.COFFER_ADDR || 'http://127.0.0.1:8200', token: env.COFFER_TOKEN || undefined, ...options });
  }

  /** Replaces the token used by later calls (logins and renewals do this themselves). */
  setToken(token: string | undefined): void {
    this.http.setToken(token);
  }

  /** The token later calls send (it changes on login and renewal). */
  getToken(): string | undefined {
    return this.http.currentToken();
  }

  /**
   * Renews this client's token before it expires, until `stop()`, max_expires_at
   * or revocation (see TokenRenewer). `auth` is the login's answer, or
   * lookupSelf()'s for a token given as is.
   */
  startRenewal(auth: Pick<AuthInfo, 'expires_at' | 'renewable' | 'max_expires_at'>, options: RenewerOptions = {}): TokenRenewer {
    return new TokenRenewer(this.token, auth, options);
  }
}

export class SysApi {
  constructor(private readonly http: Transport) {}

  async status(): Promise<SealStatus> {
    return this.http.request({ method: 'GET', path: '/v1/sys/seal-status' });
  }

  /** Resolves for sealed (503) and uninitialised (501) servers too: those are answers, not failures. */
  async health(): Promise<HealthStatus> {
    // Accepting 503 also means a sealed server is not retried: its answer is the state asked for.
    return this.http.request({ method: 'GET', path: '/v1/sys/health', acceptStatus: [501, 503] });
  }

  /** With the PKCS#11 seal the answer holds recovery shares (`recovery_shares`, `recovery_threshold`) instead. */
  async init(options: { shares?: number; threshold?: number; recovery_shares?: number; recovery_threshold?: number } = {}): Promise<InitResult> {
    return this.http.request({ method: 'POST', path: '/v1/sys/init', body: options });
  }

  /** Submits one unseal share; the status tells how many more are needed. */
  async unseal(share: string): Promise<SealStatus> {
    return this.http.request({ method: 'POST', path: '/v1/sys/unseal', body: { share } });
  }

  /** Abandons a partial unseal (repeating it is harmless). */
  async resetUnseal(): Promise<SealStatus> {
    return this.http.request({ method: 'POST', path: '/v1/sys/unseal', body: { reset: true }, idempotent: true });
  }

  async seal(): Promise<SealStatus> {
    return this.http.request({ method: 'POST', path: '/v1/sys/seal', body: {} });
  }

  /** A backup (admin): the response, its body the backup file to stream to disk (format: @coffer/sdk/api backup.ts). */
  async backup(): Promise<Response> {
    return this.http.raw({ method: 'GET', path: '/v1/sys/backup' });
  }

  /**
   * Proves on this unsealed server that every wrapped key of `backup` opens (admin); answers
   * counts, never keys. A stream (a file read from disk) is sent as it is read: the server spools
   * it, neither side holds it. Not retried with a stream (its bytes are gone).
   */
  async verifyBackup(backup: string | ReadableStream<Uint8Array>): Promise<BackupVerifyResult> {
    const res = await this.http.raw({ method: 'POST', path: '/v1/sys/backup/verify', upload: backup, contentType: BACKUP_MEDIA_TYPE });
    return JSON.parse(await res.text()) as BackupVerifyResult;
  }

  /**
   * Restores `backup` into this uninitialised server. A Shamir backup needs the threshold of its
   * ORIGINAL unseal `shares`: they prove the backup's sealed digest before anything is written,
   * and unseal the server afterwards. A PKCS#11 backup takes none (the HSM holds the root key).
   * Not retried.
   */
  async restore(backup: string | ReadableStream<Uint8Array>, options: { shares?: readonly string[] } = {}): Promise<RestoreResult> {
    // A stream (a file read from disk) is sent as it is read: the server spools it, neither side holds it.
    const upload = typeof backup === 'string' ? restoreUpload(backup, options.shares) : withFirstLine(restoreEnvelopeLine(options.shares), backup);
    const res = await this.http.raw({ method: 'POST', path: '/v1/sys/restore', upload, contentType: BACKUP_MEDIA_TYPE, anonymous: true });
    return JSON.parse(await res.text()) as RestoreResult;
  }

  /**
   * Rotates the root key (admin). PKCS#11: done in one call. Shamir: give the
   * threshold of current `shares`; the answer holds the new shares (state
   * 'pending_verification') and nothing changes until verifyRotateRoot.
   * Not retried: a repeat would replace the pending shares.
   */
  async rotateRoot(options: { shares?: string[]; new_shares?: number; new_threshold?: number } = {}): Promise<RotateRootResult> {
    return this.http.request({ method: 'POST', path: '/v1/sys/rotate-root', body: options, idempotent: false });
  }

  /** Shamir rotation, step 2: the threshold of the NEW shares; then only they unseal. */
  async verifyRotateRoot(shares: string[]): Promise<RotateRootResult> {
    return this.http.request({ method: 'POST', path: '/v1/sys/rotate-root/verify', body: { shares }, idempotent: false });
  }

  /** Shamir ⇄ PKCS#11 (admin, unsealed): unseal shares to pkcs11, recovery shares to shamir. */
  async sealMigrate(to: 'shamir' | 'pkcs11', shares: string[]): Promise<SealMigrateResult> {
    return this.http.request({ method: 'POST', path: '/v1/sys/seal-migrate', body: { to, shares }, idempotent: false });
  }

  /** One share towards a new root token (no token needed: the shares are the authority); the last one's answer holds it. */
  async generateRoot(share: string): Promise<GenerateRootProgress> {
    return this.http.request({ method: 'POST', path: '/v1/sys/generate-root', body: { share }, idempotent: false });
  }

  /** Abandons a root token generation in progress. */
  async resetGenerateRoot(): Promise<GenerateRootProgress> {
    return this.http.request({ method: 'POST', path: '/v1/sys/generate-root', body: { reset: true }, idempotent: true });
  }
}

export class NamespacesApi {
  constructor(private readonly http: Transport) {}

  async create(name: string, options: { description?: string } = {}): Promise<NamespaceDetail> {
    return this.http.request({ method: 'POST', path: '/v1/namespaces', body: { name: checkNamespace(name), ...options } });
  }

  /** One page; pass `next_cursor` back as `cursor` for the next. */
  async list(options: PageOptions = {}): Promise<NamespacePage> {
    return this.http.request({ method: 'GET', path: '/v1/namespaces', query: { ...options } });
  }

  /** Every namespace, fetching pages as the iteration reaches them. */
  async *listAll(options: { pageSize?: number } = {}): AsyncGenerator<NamespaceSummary> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ limit: options.pageSize, cursor });
      yield* page.namespaces;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  async get(name: string): Promise<NamespaceDetail> {
    return this.http.request({ method: 'GET', path: ns(name) });
  }

  /** Changes the description and/or the KEK rotation period (seconds, null = no scheduled rotation). */
  async update(name: string, changes: { description?: string; rotation_period?: number | null; kms_export_approval?: boolean }): Promise<NamespaceDetail> {
    return this.http.request({ method: 'PATCH', path: ns(name), body: changes, idempotent: true });
  }

  /** KEK versions, usage counts, schedule and the rewrap job's progress. */
  async kekStatus(name: string): Promise<KekStatus> {
    return this.http.request({ method: 'GET', path: `${ns(name)}/kek` });
  }

  /** A new KEK version takes every new write; the background job rewraps older DEKs. Not retried (each call adds a version). */
  async rotateKek(name: string): Promise<KekRotation> {
    return this.http.request({ method: 'POST', path: `${ns(name)}/kek/rotate`, body: {}, idempotent: false });
  }

  /** Schedules crypto-shredding (7–30 days, default 30); the namespace is disabled at once. */
  async shred(name: string, options: { pending_window_days?: number } = {}): Promise<ShredSchedule> {
    // Not retried: a repeat after a lost answer would be refused (409 already scheduled).
    return this.http.request({ method: 'POST', path: `${ns(name)}/shred`, body: options, idempotent: false });
  }

  /** Cancels a scheduled shred within its window; nothing is lost. */
  async cancelShred(name: string): Promise<ShredSchedule> {
    return this.http.request({ method: 'DELETE', path: `${ns(name)}/shred`, idempotent: false });
  }

  /**
   * The target side of a move (admin): this namespace's import key (created with the namespace
   * when `create` and it is missing). Hand `public_key` to the source's `export`. One import per key, 24 h.
   */
  async importKey(name: string, options: { create?: boolean } = {}): Promise<ImportParams> {
    if (options.create) {
      try {
        await this.create(name);
      } catch (err) {
        if (!(err instanceof CofferError && err.code === 'already_exists')) throw err;
      }
    }
    return this.http.request({
      method: 'GET',
      path: `/v1/byok/namespaces/${checkNamespace(name)}/import-params`,
      query: { algorithm: 'RSA_AES_KEY_WRAP_SHA_256' },
      idempotent: false,
    });
  }

  /**
   * The namespace's secrets (every retained version) and exportable named keys, sealed for the
   * target's import key `publicKeyPem` (server admin): the bundle file's text (format:
   * @coffer/sdk/api namespace-transfer.ts). Secret values leave only inside the bundle.
   */
  async export(name: string, publicKeyPem: string): Promise<string> {
    const res = await this.http.raw({ method: 'POST', path: `${ns(name)}/export`, upload: JSON.stringify({ public_key: publicKeyPem }), contentType: 'application/json' });
    return res.text();
  }

  /** Imports a bundle into this server's namespace `name` (existing, empty; its import key made the bundle). Not retried: one attempt per import key. */
  async import(name: string, bundle: string): Promise<NamespaceImportResult> {
    const res = await this.http.raw({ method: 'POST', path: `${ns(name)}/import`, upload: bundle, contentType: BACKUP_MEDIA_TYPE });
    return JSON.parse(await res.text()) as NamespaceImportResult;
  }

  /** Deleting a namespace destroys its keys: without `force`, refused (409) while it holds secrets. */
  async delete(name: string, options: { force?: boolean } = {}): Promise<NamespaceDeleteResult> {
    return this.http.request({ method: 'DELETE', path: ns(name), query: { force: options.force ? 'true' : undefined } });
  }
}

export class SecretsApi {
  constructor(private readonly http: Transport) {}

  /**
   * `minVersion`: read-your-writes across servers behind a load balancer — pass the version a
   * write returned, and no server answers with an older one from its cache.
   */
  async get(namespace: string, path: string, options: { version?: number; minVersion?: number } = {}): Promise<SecretVersion> {
    return this.http.request({ method: 'GET', path: secretUrl(namespace, path), query: { version: options.version, min_version: options.minVersion } });
  }

  /** Writes a new version. Not retried: a repeat would add another version. */
  async put(namespace: string, path: string, data: SecretData, options: PutOptions = {}): Promise<WriteResult> {
    const body = { data, type: options.type, metadata: options.metadata, cas: options.cas, max_versions: options.maxVersions };
    return this.http.request({ method: 'PUT', path: secretUrl(namespace, path), body, idempotent: false });
  }

  /** One page of a folder ('' or '/' is the namespace root). */
  async list(namespace: string, folder = '', options: PageOptions & { recursive?: boolean } = {}): Promise<SecretListPage> {
    return this.http.request({
      method: 'GET',
      path: `/v1/secrets/${checkNamespace(namespace)}/${normalizeFolder(folder)}`,
      query: { limit: options.limit, cursor: options.cursor, recursive: options.recursive ? 'true' : undefined },
    });
  }

  /** Every key of a folder, fetching pages as the iteration reaches them. */
  async *listAll(namespace: string, folder = '', options: { recursive?: boolean; pageSize?: number } = {}): AsyncGenerator<string> {
    let cursor: string | undefined;
    do {
      const page = await this.list(namespace, folder, { recursive: options.recursive, limit: options.pageSize, cursor });
      yield* page.keys;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  async history(namespace: string, path: string): Promise<SecretHistory> {
    return this.http.request({ method: 'GET', path: secretUrl(namespace, path, ':versions') });
  }

  /** Writes an earlier version's content as the new latest version. */
  async rollback(namespace: string, path: string, version: number, options: { cas?: number } = {}): Promise<WriteResult> {
    return this.http.request({ method: 'POST', path: secretUrl(namespace, path, ':rollback'), body: { version, cas: options.cas } });
  }

  /** Soft-deletes versions (default: the latest); undelete brings them back. */
  async delete(namespace: string, path: string, versions?: number[]): Promise<VersionsResult> {
    return this.changeVersions(namespace, path, ':delete', versions);
  }

  async undelete(namespace: string, path: string, versions?: number[]): Promise<VersionsResult> {
    return this.changeVersions(namespace, path, ':undelete', versions);
  }

  /** Erases versions for good (default: the latest). */
  async destroy(namespace: string, path: string, versions?: number[]): Promise<VersionsResult> {
    return this.changeVersions(namespace, path, ':destroy', versions);
  }

  /** Removes the secret with every version. */
  async purge(namespace: string, path: string): Promise<PurgeResult> {
    return this.http.request({ method: 'POST', path: secretUrl(namespace, path, ':purge'), body: {} });
  }

  /**
   * The latest readable version of every secret under a folder (recursively), all pages,
   * and the paths the caller may list but not read (`withheld`: check it before treating
   * `secrets` as the whole folder). A folder with nothing the caller can see rejects with
   * not_found (404).
   */
  async bulk(namespace: string, folder = '', options: { pageSize?: number } = {}): Promise<BulkResult> {
    const ns = checkNamespace(namespace);
    const prefix = normalizeFolder(folder);
    const path = `/v1/bulk/${ns}/${prefix}`;
    const secrets: SecretVersion[] = [];
    const withheld: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.http.request<BulkPage>({ method: 'GET', path, query: { limit: options.pageSize, cursor } });
      secrets.push(...page.secrets);
      // A server older than the field withholds silently; nothing to add then.
      withheld.push(...(page.withheld ?? []));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    return { namespace: ns, folder: prefix, secrets, withheld };
  }

  private async changeVersions(namespace: string, path: string, action: string, versions?: number[]): Promise<VersionsResult> {
    const explicit = versions !== undefined && versions.length > 0;
    return this.http.request({
      method: 'POST',
      path: secretUrl(namespace, path, action),
      body: explicit ? { versions } : {},
      // Naming the versions makes a repeat a no-op; "the latest" could mean another version by then.
      idempotent: explicit,
    });
  }
}

/** The largest page of an audit search. */
export const MAX_AUDIT_PAGE = 1000;

/** An audit query as URL parameters; refuses what the server would, without sending it. */
function auditParams(q: AuditQuery): Query {
  const integer = (name: string, value: number | undefined, min: number, max?: number) => {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min || (max !== undefined && value > max))) {
      throw invalidArgument(`${name} must be an integer ${max === undefined ? `>= ${min}` : `from ${min} to ${max}`}`);
    }
    return value;
  };
  const time = (name: string, value: Date | string | undefined) => {
    if (!(value instanceof Date)) return value; // a string goes as given: the server checks it is ISO 8601
    if (Number.isNaN(value.getTime())) throw invalidArgument(`${name} is an invalid Date`);
    return value.toISOString();
  };
  return {
    identity: q.identity,
    namespace: q.namespace,
    path: q.path,
    action: q.action,
    outcome: q.outcome,
    since: time('since', q.since),
    until: time('until', q.until),
    cursor: integer('cursor', q.cursor, 0),
    order: q.order,
    limit: integer('limit', q.limit, 1, MAX_AUDIT_PAGE),
  };
}

/** The audit log: every request the server answered. Needs an admin token; 503 while sealed. */
export class AuditApi {
  constructor(private readonly http: Transport) {}

  /** One page, newest first unless `order: 'asc'`; pass `next_cursor` back as `cursor` (same order) for the next. */
  async search(query: AuditQuery = {}): Promise<AuditPage> {
    return this.http.request({ method: 'GET', path: '/v1/sys/audit', query: auditParams(query) });
  }

  /**
   * Every matching entry, fetching pages as the iteration reaches them. `cursor`
   * is where to start: with `order: 'asc'`, the seq of the last entry already seen.
   */
  async *searchAll(query: Omit<AuditQuery, 'limit'> & { pageSize?: number } = {}): AsyncGenerator<AuditEntry> {
    const { pageSize, cursor: start, ...filter } = query;
    let cursor = start;
    do {
      const page = await this.search({ ...filter, cursor, limit: pageSize });
      yield* page.entries;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** Walks the hash chain and the signed checkpoints; `ok: false` names the first broken entry. */
  async verify(): Promise<AuditVerifyResult> {
    return this.http.request({ method: 'GET', path: '/v1/sys/audit/verify' });
  }

  /**
   * The HMAC under which the log records `input` (a secret value, a token accessor):
   * compare it with entries' `hashed` fields and `identity.accessor_hmac`.
   */
  async hash(input: string): Promise<string> {
    // A POST only to keep the value out of URLs and access logs: the same input always gives the same HMAC.
    const result = await this.http.request<{ hash: string }>({ method: 'POST', path: '/v1/sys/audit/hash', body: { input }, idempotent: true });
    return result.hash;
  }
}

/** `stream` with `line` (UTF-8) sent before it. */
function withFirstLine(line: string, stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  if (line === '') return stream;
  const reader = stream.getReader();
  let first: Uint8Array | null = new TextEncoder().encode(line);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (first) {
        controller.enqueue(first);
        first = null;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
