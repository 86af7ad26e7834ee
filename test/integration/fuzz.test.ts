// Property-based fuzzing of the whole HTTP surface: every route template the server names
// (http/route-template.ts ROUTE_TEMPLATES, so a route added there is fuzzed too), instantiated
// with hostile path segments, queries, methods, headers and bodies, sent with a root token, a
// limited token, broken tokens or none. For every request: no 5xx (integrity_error aside), a
// JSON error with a code on every 4xx, an answer within the per-request timeout, and nothing
// served that the route table cannot name. Afterwards the server is healthy, still serves a
// secret it held before, and its audit chain verifies.
//
// COFFER_FUZZ_RUNS=N   cases per route (default 20: the bounded CI run, ~30 s for both storages)
// COFFER_FUZZ_SEED=S   replay a run (fast-check prints the seed and path of a failure)
// COFFER_FUZZ_PATH=P   with the seed: replay exactly the failing case
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import fc from 'fast-check';
import { ROUTE_TEMPLATES, UNMATCHED, routeTemplate } from '@coffer/server/http/route-template';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

const RUNS = Number(process.env.COFFER_FUZZ_RUNS ?? 20);
const SEED = process.env.COFFER_FUZZ_SEED === undefined ? undefined : Number(process.env.COFFER_FUZZ_SEED);
const PATH = process.env.COFFER_FUZZ_PATH;
/** An answer slower than this is a hang (generous: a busy 2-core machine, argon2 and RSA key generation on some routes). */
const REQUEST_TIMEOUT_MS = 20_000;
const BODY_LIMIT = 64 * 1024;

// ---------------------------------------------------------------- generators

/** Who is calling; resolved to headers at send time, so counterexamples never print a token. */
const AUTH = ['root', 'limited', 'none', 'root-lowercase-scheme', 'limited-x-coffer-token', 'both-headers', 'truncated', 'alg-none', 'basic', 'garbage', 'huge'] as const;
type Auth = (typeof AUTH)[number];

/**
 * Long values are written `REPEAT(x,20000)` in generated requests and expanded only when sent,
 * so that a counterexample prints in a line rather than in 20 KB.
 */
const repeat = (c: string, n: number) => `REPEAT(${c},${n})`;
const expand = (s: string) => s.replace(/REPEAT\((.),(\d+)\)/g, (_m, c: string, n: string) => c.repeat(Number(n)));

/** Segments that have broken path handling somewhere, some time. */
const EVIL_SEGMENTS = [
  '%00', 'a%00b', '%2F', '%2f', '%2e%2e', '%2E', '..', '.', '', '%', '%zz', '%E0%A4', '%ED%A0%80', '%C0%80', '%FF', '%C3%A9',
  ':', '::versions', 'a:b', ';x', '%3B', '%3F', '%23', '*', '~', "'", '"', '<x>', '\\', '#', '#/../..', 'é', 'ÿþ', '\u0080',
  repeat('x', 300), repeat('y', 5000), 'FZ', 'Fz', 'fz%20', 'fz%09',
];
/** Characters Node's HTTP client lets into a request target, except '/'. */
const RAW_CHARS = [...Array.from({ length: 0x7f - 0x21 }, (_, i) => String.fromCharCode(0x21 + i)), 'é', '\u00a0', '\u00ff'].filter((c) => c !== '/');

const percentEncoded = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');

const evilSegment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...EVIL_SEGMENTS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }).map(percentEncoded) },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(...RAW_CHARS), maxLength: 12 }) },
);
const validSegment = fc.constantFrom('app', 'db', 'deep', 'a', 'b', 'c', 'x-1', 'v.2', '_');

/** Fillers for template placeholders: mostly names that exist (to get past the first check), else hostile ones. */
function filler(placeholder: string, escrowId: string): fc.Arbitrary<string> {
  const names: Record<string, string[]> = {
    ':ns': ['fz', 'fz-other'],
    ':name': ['fz', 'fz-limited', 'fz-user', 'fz-role', 'fz-group', escrowId],
    ':path': ['app/db', 'app/new', 'deep/a/b/c'],
    ':folder': ['app', 'deep/a', ''],
  };
  const multi = placeholder === ':path' || placeholder === ':folder';
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...names[placeholder]!) },
    { weight: 3, arbitrary: multi ? fc.array(fc.oneof(validSegment, evilSegment), { minLength: 1, maxLength: 4 }).map((s) => s.join('/')) : evilSegment },
  );
}

/** A fixed word of a template, mostly as is; sometimes in another case or percent-encoded. */
const fixedWord = (word: string) =>
  fc.oneof(
    { weight: 10, arbitrary: fc.constant(word) },
    { weight: 1, arbitrary: fc.constantFrom(word.toUpperCase(), word.charAt(0).toUpperCase() + word.slice(1)) },
    { weight: 1, arbitrary: fc.constant(word.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`)) },
  );

/** Whole-target mutations that no single segment covers. */
const MUTATIONS = ['none', 'absolute-form', 'asterisk', 'fragment', 'double-slash', 'trailing-slash', 'dot-segment', 'upper-case', 'huge'] as const;
function mutate(path: string, how: (typeof MUTATIONS)[number], host: string): string {
  switch (how) {
    case 'absolute-form':
      return `http://${host}${path}`;
    case 'asterisk':
      return '*';
    case 'fragment':
      return `${path}#x/../..`;
    case 'double-slash':
      return path.replace('/', '//');
    case 'trailing-slash':
      return `${path}/`;
    case 'dot-segment':
      return path.replace(/\/([^/]*)$/, '/./$1');
    case 'upper-case':
      // ASCII only: `ÿ`.toUpperCase() is outside what an HTTP client may send unencoded.
      return path.replace(/[a-z]/g, (c) => c.toUpperCase());
    case 'huge':
      return `${path}/${repeat('z', 20_000)}`;
    default:
      return path;
  }
}

const QUERY_KEYS = ['version', 'limit', 'cursor', 'recursive', 'force', 'namespace', 'path', 'identity', 'action', 'outcome', 'since', 'until', 'order', 'algorithm', 'activecode', 'sealedcode', 'standbyok', 'x'];
const QUERY_VALUES = [
  '9999999999', '2147483648', '2147483647', '0', '-1', '1', '200', '503', 'true', 'false', '', '%00', 'a%00', '%ED%A0%80', '%FF', '%', '1e3',
  '0x1f', repeat('9', 400), 'asc', 'desc', 'success', '2024-01-01T00:00:00Z', 'not-a-date', 'RSAES_OAEP_SHA_256', 'fz', '*',
];
const queryString = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  {
    weight: 2,
    arbitrary: fc
      .array(
        fc.tuple(
          fc.oneof(fc.constantFrom(...QUERY_KEYS), fc.string({ unit: fc.constantFrom(...RAW_CHARS.filter((c) => !'&=#'.includes(c))), maxLength: 6 })),
          fc.oneof(fc.constantFrom(...QUERY_VALUES), fc.string({ unit: 'binary', maxLength: 10 }).map(percentEncoded)),
        ),
        { maxLength: 4 },
      )
      .map((pairs) => `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`),
  },
);

/** Field names of the request schemas, so that generated bodies get past `strict()` to the values. */
const FIELDS = [
  'data', 'metadata', 'type', 'cas', 'max_versions', 'version', 'versions', 'name', 'description', 'rotation_period', 'pending_window_days',
  'shares', 'threshold', 'share', 'reset', 'new_shares', 'new_threshold', 'to', 'recovery_shares', 'input', 'rules', 'namespace', 'path',
  'capabilities', 'effect', 'policies', 'members', 'groups', 'password', 'username', 'role', 'role_id', 'secret_id', 'jwt', 'accessor',
  'identity', 'display_name', 'ttl', 'max_ttl', 'renewable', 'increment', 'cidrs', 'import_token', 'encrypted_key_material', 'kek_version',
  'algorithm', 'public_key', 'ttl_seconds', 'issuer', 'bound_audiences', 'allowed_common_names', 'token_ttl', 'secret_id_num_uses',
];
const fieldName = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...FIELDS) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) });
const evilString = fc.oneof(
  fc.constantFrom('', '\u0000', 'a\u0000b', '\ud800', '\udfff', 'x\ud83d', '\ud83d\ude00', '\u2028', '\ufeff', repeat('x', 2000), 'fz', 'fz-limited', 'app/db', '*', 'read', 'generic', 'password', 'default', 'shamir', 'pkcs11'),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.string({ maxLength: 16 }),
);
const evilNumber = fc.oneof(
  fc.constantFrom(0, -1, 1, 2, 7, 30, 255, 256, 3600, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 31), 1.5, 1e300, -1e300, Number.MAX_SAFE_INTEGER),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const { value: jsonValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 5, withCrossShrink: true },
    evilString,
    evilNumber,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fieldName, tie('value'), { maxKeys: 4 }),
  ),
}));
/** Bodies the JSON parser cannot (or can only just) read. */
const RAW_BODIES = [
  '', '{', '[', 'null', '"x"', '1e400', '{"data":{"k":1e400}}', '{"a":1}{"b":2}', '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"x":1}}}',
  '{"data":{"k":"\\u0000"}}', '{"data":{"k":"\\ud800"}}', `${repeat('[', 20_000)}${repeat(']', 20_000)}`, `{"a":${repeat('{', 5000)}${repeat('}', 5000)}}`,
  repeat('x', BODY_LIMIT + 10),
];
/** A body as generated (printable in a counterexample); `bytesOf` makes what is sent. */
type Body = undefined | { json: unknown } | { raw: string } | { bytes: number[] };
const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 5, arbitrary: fc.dictionary(fieldName, jsonValue, { maxKeys: 6 }).map((json) => ({ json })) },
  { weight: 2, arbitrary: jsonValue.map((json) => ({ json })) },
  { weight: 1, arbitrary: fc.constantFrom(...RAW_BODIES).map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 32 }).map((bytes) => ({ bytes })) },
);
function bytesOf(b: Body): Buffer | undefined {
  if (b === undefined) return undefined;
  if ('bytes' in b) return Buffer.from(b.bytes);
  if ('raw' in b) return Buffer.from(expand(b.raw));
  return Buffer.from(JSON.stringify(b.json, (_k, v: unknown) => (typeof v === 'string' ? expand(v) : v)) ?? 'null');
}

const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'PURGE', 'LIST', 'FOO', 'get'];
const CONTENT_TYPES = [
  undefined, 'application/json', 'text/plain', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'application/json; charset=utf-16',
  'application/json; charset=bogus', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '*/*', 'garbage',
];
const extraHeaders = fc.array(
  fc.oneof(
    fc.constantFrom<[string, string]>(
      ['content-encoding', 'gzip'],
      ['content-encoding', 'br'],
      ['content-encoding', 'bogus'],
      ['content-encoding', 'identity'],
      ['expect', '100-continue'],
      ['x-forwarded-for', '10.0.0.1, 127.0.0.1'],
      ['x-huge', repeat('h', 20_000)],
      ['accept', 'text/html'],
    ),
    fc.tuple(fc.constantFrom('x-fuzz', 'x-request-id', 'x-coffer-token', 'cookie'), fc.string({ unit: fc.constantFrom(...RAW_CHARS), maxLength: 40 })),
  ),
  { maxLength: 2 },
);

interface FuzzRequest {
  method: string;
  target: string;
  auth: Auth;
  contentType: string | undefined;
  headers: Array<[string, string]>;
  body: Body;
}

function requestFor(template: string, host: string, escrowId: string): fc.Arbitrary<FuzzRequest> {
  const parts = template
    .split('/')
    .slice(1)
    .map((part) => {
      // `:path:versions` is a placeholder followed by a fixed action.
      const m = /^(:[a-z]+)(.*)$/.exec(part);
      if (!m) return part === '' ? fc.constant('') : fixedWord(part);
      return fc.tuple(filler(m[1]!, escrowId), m[2] ? fixedWord(m[2]) : fc.constant('')).map(([a, b]) => a + b);
    });
  const path = fc.tuple(...parts).map((p) => `/${p.join('/')}`);
  return fc.record({
    method: fc.constantFrom(...METHODS),
    target: fc
      .tuple(path, queryString, fc.oneof({ weight: 12, arbitrary: fc.constant('none' as const) }, { weight: 1, arbitrary: fc.constantFrom(...MUTATIONS) }))
      .map(([p, q, how]) => mutate(p, how, host) + q),
    auth: fc.oneof({ weight: 6, arbitrary: fc.constantFrom<Auth>('root', 'limited', 'none') }, { weight: 2, arbitrary: fc.constantFrom(...AUTH) }),
    contentType: fc.constantFrom(...CONTENT_TYPES),
    headers: extraHeaders,
    body,
  });
}

/** Any path at all under a handful of prefixes: finds routes express serves that the route table does not name. */
function strayRequest(host: string, escrowId: string): fc.Arbitrary<FuzzRequest> {
  const words = fc.constantFrom('v1', 'V1', 'v2', 'sys', 'secrets', 'bulk', 'namespaces', 'auth', 'byok', 'escrow', 'token', 'policies', 'audit', 'health', 'fz', escrowId);
  return requestFor('/:path', host, escrowId).chain((r) =>
    fc.array(fc.oneof(words, evilSegment), { minLength: 1, maxLength: 6 }).map((segments) => ({ ...r, target: `/${segments.join('/')}` })),
  );
}

// ---------------------------------------------------------------- the run

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

describeEachStorage('fuzzing every route', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let host: string;
  let root: string;
  let limited: string;
  let escrowId = '00000000-0000-4000-8000-000000000000';

  const headersFor = (auth: Auth): Record<string, string> => {
    switch (auth) {
      case 'root':
        return { authorization: `Bearer ${root}` };
      case 'limited':
        return { authorization: `Bearer ${limited}` };
      case 'root-lowercase-scheme':
        return { authorization: `bearer   ${root}` };
      case 'limited-x-coffer-token':
        return { 'x-coffer-token': limited };
      case 'both-headers':
        return { authorization: `Bearer ${limited}`, 'x-coffer-token': root };
      case 'truncated':
        return { authorization: `Bearer ${root.slice(0, -4)}` };
      case 'alg-none': {
        const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        return { authorization: `Bearer ${part({ alg: 'none', typ: 'JWT' })}.${part({ sub: 'root', policies: ['root'] })}.` };
      }
      case 'basic':
        return { authorization: 'Basic cm9vdDpyb290' };
      case 'garbage':
        return { authorization: 'Bearer a.b.c' };
      case 'huge':
        return { authorization: `Bearer ${'a'.repeat(20_000)}` };
      default:
        return {};
    }
  };

  function send(r: FuzzRequest): Promise<Answer | { error: string }> {
    // Requests that would end the run rather than test anything: sealing, and revoking the caller's own token.
    const template = routeTemplate(r.target);
    const auth = r.method === 'POST' && (template === '/v1/sys/seal' || template === '/v1/auth/token/revoke-self') ? 'none' : r.auth;
    const headers: Record<string, string> = { ...headersFor(auth) };
    for (const [name, value] of r.headers) headers[name] = expand(value);
    if (r.contentType) headers['content-type'] = r.contentType;
    const payload = bytesOf(r.body);
    if (payload) headers['content-length'] = String(payload.length);
    const url = new URL(server.url);
    return new Promise((resolve) => {
      const req = http.request({ host: url.hostname, port: url.port, method: r.method, path: expand(r.target), headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => resolve({ error: `response: ${err.message}` }));
      });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => {
        req.destroy();
        resolve({ error: `no answer within ${REQUEST_TIMEOUT_MS} ms` });
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: `${err.code ?? ''} ${err.message}` }));
      req.end(payload);
    });
  }

  /** The invariants; returns what is wrong, or null. */
  function problem(r: FuzzRequest, a: Answer | { error: string }): string | null {
    if ('error' in a) {
      // The server may close a connection whose declared body is too large while it is still being sent.
      if ((bytesOf(r.body)?.length ?? 0) > BODY_LIMIT && /ECONNRESET|EPIPE/.test(a.error)) return null;
      return `no answer: ${a.error}`;
    }
    const template = routeTemplate(r.target);
    let json: { error?: { code?: unknown } } | undefined;
    try {
      json = a.text ? (JSON.parse(a.text) as typeof json) : undefined;
    } catch {
      json = undefined;
    }
    if (a.status >= 500) {
      // Health answers with the status the caller asked for (?activecode=…).
      if (template === '/v1/sys/health' && json && 'initialized' in json) return null;
      if (a.status === 500 && json?.error?.code === 'integrity_error') return null;
      return `server error ${a.status}`;
    }
    if (a.status >= 400 && r.method !== 'HEAD' && (typeof json?.error?.code !== 'string' || !/json/.test(a.contentType))) {
      return `${a.status} without a JSON error code`;
    }
    if (a.status >= 200 && a.status < 300 && template === UNMATCHED) return `served (${a.status}) a path the route table does not name`;
    if (server.core.isSealed) return 'the server got sealed';
    return null;
  }


  const property = (arb: fc.Arbitrary<FuzzRequest>) =>
    fc.asyncProperty(arb, async (r) => {
      const answer = await send(r);
      const wrong = problem(r, answer);
      if (wrong) {
        const got = 'error' in answer ? '' : ` → ${answer.status} ${answer.text.slice(0, 300)}`;
        // fast-check prints the request itself (the counterexample); tokens appear in it only as `auth` kinds.
        throw new Error(`${wrong}${got}`);
      }
    });
  // A failure reports at once with its seed (shrinking would replay hundreds of requests on a busy CI machine).
  const options = (runs: number) => ({ numRuns: runs, seed: SEED, path: PATH, endOnFailure: true });
  const timeout = Math.max(120_000, RUNS * 5_000);

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { maxRequestBytes: BODY_LIMIT, loginRatePerSecond: 0 });
    host = new URL(server.url).host;
    ({ token: root } = await initAndUnseal(server.url, 1, 1));
    const setup: Array<[string, string, unknown]> = [
      ['POST', '/v1/namespaces', { name: 'keep' }],
      ['PUT', '/v1/secrets/keep/known', { data: { value: 'still-here' } }],
      ['POST', '/v1/namespaces', { name: 'fz' }],
      ['PUT', '/v1/secrets/fz/app/db', { data: { password: 'fuzz-pw' } }],
      ['PUT', '/v1/secrets/fz/deep/a/b/c', { data: { k: 'v' } }],
      ['PUT', '/v1/sys/policies/fz-limited', { rules: [{ namespace: 'fz', path: 'app/*', capabilities: ['read', 'list', 'create'] }] }],
      ['PUT', '/v1/auth/userpass/users/fz-user', { password: 'fuzz-password', policies: ['fz-limited'] }],
      ['PUT', '/v1/auth/groups/fz-group', { policies: ['fz-limited'], members: ['fz-user'] }],
      ['PUT', '/v1/auth/approle/roles/fz-role', { policies: ['fz-limited'] }],
    ];
    for (const [method, path, requestBody] of setup) {
      const res = await api(server.url, method, path, { token: root, body: requestBody });
      if (res.status >= 300) throw new Error(`setup ${method} ${path}: ${res.status} ${res.text}`);
    }
    limited = (await api(server.url, 'POST', '/v1/auth/token/create', { token: root, body: { policies: ['fz-limited'] } })).body.auth.client_token;
    const publicKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const escrow = await api(server.url, 'POST', '/v1/escrow/requests', { token: root, body: { namespace: 'fz', public_key: publicKey } });
    escrowId = escrow.body.id;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it.each(ROUTE_TEMPLATES.map((t) => [t]))('%s', async (template) => {
    await fc.assert(property(requestFor(template, host, escrowId)), options(RUNS));
  }, timeout);

  it('stray paths', async () => {
    await fc.assert(property(strayRequest(host, escrowId)), options(RUNS * 8));
  }, timeout * 4);

  it('is healthy afterwards, still serves what it held, and its audit chain verifies', async () => {
    expect((await api(server.url, 'GET', '/v1/sys/health')).body).toMatchObject({ initialized: true, sealed: false });
    expect((await api(server.url, 'GET', '/v1/secrets/keep/known', { token: root })).body).toMatchObject({ data: { value: 'still-here' } });
    expect((await api(server.url, 'GET', '/v1/sys/audit/verify', { token: root })).body).toMatchObject({ ok: true });
  });
});
