// Starts the real Coffer app (same start-up code as `coffer-server`) in-process on
// 127.0.0.1 with an ephemeral port, over PGlite or a fresh real PostgreSQL database.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '@coffer/server/config';
import { createLogger } from '@coffer/server/log';
import { startServer, type RunningServer } from '@coffer/server/server';
import { createTestDatabase, describeIfPostgres, postgresUrl, type TestDatabase } from './env.js';

export type StorageKind = 'pglite' | 'postgres';

/** The storages this machine can test: PGlite always, PostgreSQL when configured. */
export function storageKinds(): StorageKind[] {
  return postgresUrl() ? ['pglite', 'postgres'] : ['pglite'];
}

/** A place for data that outlives one server process (a PGlite dir or a PostgreSQL database). */
export interface TestStore {
  kind: StorageKind;
  config: Partial<Config>;
  cleanup(): Promise<void>;
}

export async function createStore(kind: StorageKind): Promise<TestStore> {
  if (kind === 'postgres') {
    const db: TestDatabase = await createTestDatabase();
    return { kind, config: { databaseUrl: db.url }, cleanup: () => db.drop() };
  }
  const dir = mkdtempSync(join(tmpdir(), 'coffer-test-'));
  return {
    kind,
    config: { dataDir: dir },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Starts the app; with `logTo`, its JSON log lines (debug level) go to that stream. */
export async function startTestServer(
  store: TestStore,
  /** Config before validation: strings as the environment would give them are fine. */
  overrides: Partial<Record<keyof Config, unknown>> = {},
  logTo?: NodeJS.WritableStream,
): Promise<RunningServer> {
  const level = logTo ? 'debug' : 'silent';
  const config = loadConfig({}, { port: 0, host: '127.0.0.1', logLevel: level, ...store.config, ...overrides });
  return startServer(config, createLogger(level, logTo));
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
  text: string;
}

export interface ApiOptions {
  token?: string;
  body?: unknown;
  /** Sent as is, instead of JSON-encoding `body`. */
  rawBody?: string | Uint8Array;
  headers?: Record<string, string>;
}

/**
 * Sends `path` exactly as given (fetch would normalise `.`/`..` segments and
 * `%2e%2e` away before the server could refuse them).
 */
export function rawRequest(base: string, method: string, path: string, token?: string): Promise<{ status: number; body: any }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, method, path, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export async function api<T = any>(base: string, method: string, path: string, opts: ApiOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | Uint8Array | undefined;
  if (opts.rawBody !== undefined) body = opts.rawBody;
  else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  return { status: res.status, body: parsed as T, headers: res.headers, text };
}

/** Initialises with `shares`/`threshold` and unseals with the first `threshold` shares. */
export async function initAndUnseal(base: string, shares = 3, threshold = 2): Promise<{ token: string; shares: string[] }> {
  const init = await api(base, 'POST', '/v1/sys/init', { body: { shares, threshold } });
  if (init.status !== 200) throw new Error(`init failed: ${init.status} ${init.text}`);
  await unsealWith(base, init.body.shares.slice(0, threshold));
  return { token: init.body.root_token, shares: init.body.shares };
}

export async function unsealWith(base: string, shares: string[]): Promise<void> {
  for (const share of shares) {
    const res = await api(base, 'POST', '/v1/sys/unseal', { body: { share } });
    if (res.status !== 200) throw new Error(`unseal failed: ${res.status} ${res.text}`);
  }
}

/**
 * Two servers sharing `store` (PostgreSQL), initialised through the first and both unsealed with
 * different shares: a cluster of two. Stops the first if the second cannot be started.
 */
export async function startServerPair(
  store: TestStore,
  overrides: Partial<Record<keyof Config, unknown>> = {},
): Promise<{ a: RunningServer; b: RunningServer; token: string }> {
  const a = await startTestServer(store, overrides);
  try {
    const b = await startTestServer(store, overrides);
    const { token, shares } = await initAndUnseal(a.url, 3, 2);
    await unsealWith(b.url, shares.slice(1, 3));
    return { a, b, token };
  } catch (err) {
    await a.stop();
    throw err;
  }
}

/**
 * A token whose only policy (besides `alsoPolicies`) is a fresh one holding `rules`, made with the
 * root token: how the authorization suites give each case exactly the rights it tests.
 */
export async function tokenWithRules(
  base: string,
  root: string,
  rules: ReadonlyArray<Record<string, unknown>>,
  opts: { ttl?: number; alsoPolicies?: string[] } = {},
): Promise<{ client_token: string; accessor: string }> {
  const name = `p-${randomBytes(6).toString('hex')}`;
  const put = await api(base, 'PUT', `/v1/sys/policies/${name}`, { token: root, body: { rules } });
  if (put.status !== 201) throw new Error(`policy ${name}: ${put.status} ${put.text}`);
  const res = await api(base, 'POST', '/v1/auth/token/create', {
    token: root,
    body: { policies: [name, ...(opts.alsoPolicies ?? [])], ...(opts.ttl ? { ttl: opts.ttl } : {}) },
  });
  if (res.status !== 201) throw new Error(`token for ${name}: ${res.status} ${res.text}`);
  return res.body.auth as { client_token: string; accessor: string };
}

/** Asserts the error envelope of DESIGN.md and returns the code. */
export function expectError(res: ApiResponse, status: number, code?: string): void {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code: code ?? res.body?.error?.code });
  expect(typeof res.body.error.message).toBe('string');
  expect(res.body.error.requestId).toBe(res.headers.get('x-request-id'));
}

/** Runs a suite once on PGlite and once on real PostgreSQL (skipped loudly, or failed in CI, without it). */
export function describeEachStorage(name: string, fn: (kind: StorageKind) => void): void {
  describe(`${name} [pglite]`, () => fn('pglite'));
  describeIfPostgres(`${name} [postgres]`, () => fn('postgres'));
}

/** Probes until `ok` holds or `ms` pass; returns the last value (the caller asserts on it). */
export async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}
