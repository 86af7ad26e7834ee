/**
 * Logging in, CI identity tokens, the token API and token renewal.
 *
 * Login methods return the server's `auth` block and, on the client they were
 * called on, switch later calls to the new token. None of them is retried: a
 * repeated approle login could spend a limited-use secret id, and a repeated
 * userpass login counts towards the lockout.
 */
import type { AuthInfo, AuthResponse, Capability as ApiCapability, TokenCreateOptions, TokenInfo } from './api/index.js';
import { CofferError, invalidArgument } from './errors.js';
import { checkNamespace } from './names.js';
import type { FetchFn, Transport } from './transport.js';

export type { AuthInfo, AuthResponse, TokenCreateOptions } from './api/index.js';

/** Capabilities of a policy rule; open-ended, since newer servers may add some. */
export type Capability = ApiCapability | (string & {});

/** Where an ID token for `coffer login oidc` / `auth.oidc()` was found. */
export type CiProvider = 'github-actions' | 'gitlab-ci' | 'env';

export interface CiIdToken {
  provider: CiProvider;
  jwt: string;
  /** The variable the token was read from (GitLab, env), never its value. */
  source: string;
}

export interface CiIdTokenOptions {
  /**
   * Audience to request. GitHub Actions issues a token per request, so it asks for
   * this one (default "coffer"). GitLab fixes the audience in `.gitlab-ci.yml`
   * (`id_tokens: COFFER_ID_TOKEN: aud: ...`), so it is not used there.
   */
  audience?: string;
  /** Variable holding a ready ID token (GitLab `id_tokens`, or any CI). Default COFFER_ID_TOKEN. */
  tokenEnv?: string;
  /** Defaults to process.env. */
  env?: Record<string, string | undefined>;
  fetch?: FetchFn;
  timeoutMs?: number;
}

export const DEFAULT_AUDIENCE = 'coffer';
export const DEFAULT_ID_TOKEN_ENV = 'COFFER_ID_TOKEN';

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Finds an OIDC ID token for the CI job this process runs in, in this order:
 * 1. the variable named by `tokenEnv` (default COFFER_ID_TOKEN) — what a GitLab
 *    `id_tokens:` entry or any other CI can provide;
 * 2. GitHub Actions (`permissions: id-token: write`): asks the runner's token
 *    endpoint (ACTIONS_ID_TOKEN_REQUEST_URL, bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN)
 *    for a token with `audience`;
 * 3. GitLab CI without a configured variable: CI_JOB_JWT_V2 (deprecated by GitLab,
 *    removed in 17.0; its audience is the GitLab URL, so the role must bind that).
 * Rejects with code "no_ci_identity" when none is available.
 */
export async function detectCiIdToken(options: CiIdTokenOptions = {}): Promise<CiIdToken> {
  const env = options.env ?? process.env;
  const tokenEnv = options.tokenEnv ?? DEFAULT_ID_TOKEN_ENV;
  const configured = env[tokenEnv]?.trim();
  if (configured) {
    return { provider: env.GITLAB_CI === 'true' ? 'gitlab-ci' : 'env', jwt: checkJwtShape(configured, tokenEnv), source: tokenEnv };
  }
  const url = env.ACTIONS_ID_TOKEN_REQUEST_URL;
  const requestToken = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  if (url && requestToken) {
    const jwt = await fetchGithubIdToken(url, requestToken, options.audience ?? DEFAULT_AUDIENCE, options.fetch ?? globalThis.fetch, options.timeoutMs ?? 10_000);
    return { provider: 'github-actions', jwt, source: 'ACTIONS_ID_TOKEN_REQUEST_URL' };
  }
  if (env.GITHUB_ACTIONS === 'true') {
    throw new CofferError(0, 'no_ci_identity', 'GitHub Actions did not provide ACTIONS_ID_TOKEN_REQUEST_URL: give the job `permissions: id-token: write`');
  }
  if (env.GITLAB_CI === 'true') {
    const legacy = env.CI_JOB_JWT_V2?.trim();
    if (legacy) return { provider: 'gitlab-ci', jwt: checkJwtShape(legacy, 'CI_JOB_JWT_V2'), source: 'CI_JOB_JWT_V2' };
    throw new CofferError(0, 'no_ci_identity', `GitLab CI: no ID token in ${tokenEnv}; add \`id_tokens: ${tokenEnv}: aud: <audience>\` to the job`);
  }
  throw new CofferError(0, 'no_ci_identity', `no CI identity found: not in GitHub Actions or GitLab CI, and ${tokenEnv} is not set`);
}

function checkJwtShape(value: string, source: string): string {
  // The value is never echoed: it is a credential.
  if (!JWT_SHAPE.test(value)) throw invalidArgument(`${source} does not hold a JWT`);
  return value;
}

async function fetchGithubIdToken(requestUrl: string, requestToken: string, audience: string, fetchFn: FetchFn, timeoutMs: number): Promise<string> {
  let url: URL;
  try {
    url = new URL(requestUrl);
  } catch {
    throw invalidArgument('ACTIONS_ID_TOKEN_REQUEST_URL is not a URL');
  }
  // The runner's URL already carries a query (api-version=...): the audience is appended.
  url.searchParams.set('audience', audience);
  let response: Response;
  let text: string;
  try {
    response = await fetchFn(url, {
      headers: { Authorization: `bearer ${requestToken}`, Accept: 'application/json; api-version=2.0' },
      redirect: 'error',
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await response.text();
  } catch (err) {
    throw new CofferError(0, 'unavailable', `cannot reach the GitHub Actions ID token endpoint (${url.origin})`, undefined, { cause: err });
  }
  if (!response.ok) {
    throw new CofferError(0, 'no_ci_identity', `the GitHub Actions ID token endpoint answered HTTP ${response.status}`);
  }
  let value: unknown;
  try {
    value = (JSON.parse(text) as { value?: unknown }).value;
  } catch {
    value = undefined;
  }
  if (typeof value !== 'string') throw new CofferError(0, 'invalid_response', 'the GitHub Actions ID token endpoint answered without a token');
  return checkJwtShape(value, 'the GitHub Actions ID token');
}

/** Login methods. Each one switches the client to the token it returns. */
export class AuthApi {
  constructor(
    private readonly http: Transport,
    private readonly fetchFn: FetchFn,
  ) {}

  /** Uses an existing token; checks it with lookup-self and returns what the server knows of it. */
  async token(token: string): Promise<TokenInfo> {
    const previous = this.http.currentToken();
    this.http.setToken(token);
    try {
      return await this.http.request<TokenInfo>({ method: 'GET', path: '/v1/auth/token/lookup-self' });
    } catch (err) {
      this.http.setToken(previous);
      throw err;
    }
  }

  async userpass(username: string, password: string): Promise<AuthInfo> {
    if (!username) throw invalidArgument('username is empty');
    return this.login('/v1/auth/userpass/login', { username, password });
  }

  async approle(roleId: string, secretId: string): Promise<AuthInfo> {
    if (!roleId) throw invalidArgument('role_id is empty');
    return this.login('/v1/auth/approle/login', { role_id: roleId, secret_id: secretId });
  }

  /** Exchanges an OIDC ID token (from CI, or anywhere) for a Coffer token under `role`. */
  async jwt(role: string, jwt: string): Promise<AuthInfo> {
    if (!role) throw invalidArgument('role is empty');
    return this.login('/v1/auth/jwt/login', { role, jwt });
  }

  /**
   * Logs in with the TLS client certificate of the connection (mutual TLS) under a
   * certificate role. The certificate is presented by the fetch the client was
   * given (the CLI's `coffer login cert` does this with node:https).
   */
  async cert(role: string): Promise<AuthInfo> {
    if (!role) throw invalidArgument('role is empty');
    return this.login('/v1/auth/cert/login', { role });
  }

  /** detectCiIdToken() + jwt(): the one call a CI job needs. */
  async oidc(role: string, options: CiIdTokenOptions = {}): Promise<AuthInfo & { provider: CiProvider }> {
    const found = await detectCiIdToken({ fetch: this.fetchFn, ...options });
    const auth = await this.jwt(role, found.jwt);
    return { ...auth, provider: found.provider };
  }

  private async login(path: string, body: Record<string, string>): Promise<AuthInfo> {
    const { auth } = await this.http.request<AuthResponse>({ method: 'POST', path, body, idempotent: false, anonymous: true });
    this.http.setToken(auth.client_token);
    return auth;
  }
}

/** The token API (`/v1/auth/token/*`) and capabilities-self. */
export class TokenApi {
  constructor(private readonly http: Transport) {}

  async lookupSelf(): Promise<TokenInfo> {
    return this.http.request({ method: 'GET', path: '/v1/auth/token/lookup-self' });
  }

  /**
   * Renews the calling token: the server answers with a new client_token (same
   * accessor, later expiry, capped at max_expires_at), which this client uses from then on.
   */
  async renewSelf(options: { increment?: number } = {}): Promise<AuthInfo> {
    const { auth } = await this.http.request<AuthResponse>({
      method: 'POST',
      path: '/v1/auth/token/renew-self',
      body: options.increment === undefined ? {} : { increment: options.increment },
      // A renewal can be repeated: it only moves the same token's expiry.
      idempotent: true,
    });
    this.http.setToken(auth.client_token);
    return auth;
  }

  /** Revokes the calling token; the client then has none. */
  async revokeSelf(): Promise<void> {
    await this.http.request<undefined>({ method: 'POST', path: '/v1/auth/token/revoke-self', body: {}, idempotent: true });
    this.http.setToken(undefined);
  }

  /** A child token (admin). Does not change the client's own token. */
  async create(options: TokenCreateOptions): Promise<AuthInfo> {
    const { auth } = await this.http.request<AuthResponse>({ method: 'POST', path: '/v1/auth/token/create', body: options, idempotent: false });
    return auth;
  }

  async lookupAccessor(accessor: string): Promise<TokenInfo> {
    return this.http.request({ method: 'POST', path: '/v1/auth/token/lookup-accessor', body: { accessor }, idempotent: true });
  }

  async revokeAccessor(accessor: string): Promise<void> {
    await this.http.request<undefined>({ method: 'POST', path: '/v1/auth/token/revoke-accessor', body: { accessor }, idempotent: true });
  }

  async revokeIdentity(identity: string): Promise<{ revoked: number }> {
    return this.http.request({ method: 'POST', path: '/v1/auth/token/revoke-identity', body: { identity }, idempotent: true });
  }

  /** What the calling token may do at `path` in `namespace` ('' = the namespace itself). */
  async capabilitiesSelf(namespace: string, path = ''): Promise<Capability[]> {
    const result = await this.http.request<{ capabilities: Capability[] }>({
      method: 'POST',
      path: '/v1/sys/capabilities-self',
      body: { namespace: checkNamespace(namespace), path },
      idempotent: true,
    });
    return result.capabilities;
  }
}

/** Time as the renewer sees it; tests pass a fake one. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // A renewer alone must not keep a script alive.
    t.unref?.();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export type RenewalStop = 'stopped' | 'not_renewable' | 'max_ttl' | 'expired' | 'revoked';

export interface RenewerOptions {
  /** Called with each renewed auth block (e.g. to update a token cache file). */
  onRenew?: (auth: AuthInfo) => void;
  /** Called with a failed renewal; the renewer retries until the token expires. */
  onError?: (err: unknown) => void;
  /** Called once when renewal ends, with the reason. */
  onStop?: (reason: RenewalStop) => void;
  /** Renew when this fraction of the remaining lifetime has passed. Default 2/3 (as Vault's lifetime watcher). */
  fraction?: number;
  clock?: Clock;
}

/**
 * Keeps a token alive: renews it when `fraction` of its remaining lifetime has
 * passed, swaps the new client_token into the client (renewSelf does that), and
 * stops when the token is not renewable, when renewals can no longer extend it
 * (max_expires_at reached), or after it expired. A failed renewal is retried
 * with doubling delays (from 1 s) while the token is still valid; a 401/403
 * means revoked and stops at once.
 */
export class TokenRenewer {
  private timer: unknown;
  private stopped = false;
  private readonly clock: Clock;
  private readonly fraction: number;

  constructor(
    private readonly tokens: TokenApi,
    private auth: Pick<AuthInfo, 'expires_at' | 'renewable' | 'max_expires_at'>,
    private readonly options: RenewerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.fraction = options.fraction ?? 2 / 3;
    if (!(this.fraction > 0 && this.fraction < 1)) throw invalidArgument('fraction must be between 0 and 1');
    this.schedule(0);
  }

  stop(): void {
    this.finish('stopped');
  }

  get running(): boolean {
    return !this.stopped;
  }

  private finish(reason: RenewalStop): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.options.onStop?.(reason);
  }

  private schedule(failures: number): void {
    const { expires_at, renewable, max_expires_at } = this.auth;
    if (!renewable || expires_at === null) return this.finish('not_renewable');
    const now = this.clock.now();
    const expires = Date.parse(expires_at);
    if (expires <= now) return this.finish('expired');
    // Renewing cannot move the expiry past the cap: nothing left to do.
    if (max_expires_at !== null && expires >= Date.parse(max_expires_at)) return this.finish('max_ttl');
    const remaining = expires - now;
    const delay = failures === 0 ? remaining * this.fraction : Math.min(1000 * 2 ** (failures - 1), remaining / 2);
    this.timer = this.clock.setTimeout(() => void this.renew(failures), Math.max(0, delay));
  }

  private async renew(failures: number): Promise<void> {
    if (this.stopped) return;
    try {
      const auth = await this.tokens.renewSelf();
      if (this.stopped) return;
      const before = this.auth.expires_at;
      this.auth = auth;
      this.options.onRenew?.(auth);
      // A renewal that did not move the expiry (a cap the server applies) would repeat ever faster.
      if (before !== null && auth.expires_at !== null && Date.parse(auth.expires_at) <= Date.parse(before)) return this.finish('max_ttl');
      this.schedule(0);
    } catch (err) {
      if (this.stopped) return;
      this.options.onError?.(err);
      if (err instanceof CofferError && (err.status === 401 || err.status === 403)) return this.finish('revoked');
      if (err instanceof CofferError && err.code === 'not_renewable') return this.finish('not_renewable');
      this.schedule(failures + 1);
    }
  }
}
