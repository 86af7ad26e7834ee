// Generators for the fuzz suite (test/integration/fuzz.test.ts): requests built from a route
// template, hostile everywhere a client can be. Two kinds per route: anything at all (random
// method, path, headers, body), and a known-good example of the route with one or two parts
// replaced by something hostile, which gets past the first checks to the code behind them.
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';

/** The fuzzed server's COFFER_MAX_REQUEST_BYTES (small, so that oversized bodies are cheap). */
export const BODY_LIMIT = 64 * 1024;

/** An RSA public key for the escrow examples, written `PUBLIC_KEY` in generated requests. */
const PUBLIC_KEY = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();

/** Who is calling; resolved to headers at send time, so counterexamples never print a token. */
export const AUTH = ['root', 'limited', 'none', 'root-lowercase-scheme', 'limited-x-coffer-token', 'both-headers', 'truncated', 'alg-none', 'basic', 'garbage', 'huge'] as const;
export type Auth = (typeof AUTH)[number];

/**
 * Long values are written `REPEAT(x,20000)` (and the escrow key `PUBLIC_KEY`) in generated
 * requests and expanded only when sent, so that a counterexample prints in a line, not in 20 KB.
 */
export const repeat = (c: string, n: number) => `REPEAT(${c},${n})`;
export const expand = (s: string) =>
  s === 'PUBLIC_KEY' ? PUBLIC_KEY : s.replace(/REPEAT\((.),(\d+)\)/g, (_m, c: string, n: string) => c.repeat(Number(n)));

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
export type Body = undefined | { json: unknown } | { raw: string } | { bytes: number[] };
const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 5, arbitrary: fc.dictionary(fieldName, jsonValue, { maxKeys: 6 }).map((json) => ({ json })) },
  { weight: 2, arbitrary: jsonValue.map((json) => ({ json })) },
  { weight: 1, arbitrary: fc.constantFrom(...RAW_BODIES).map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 32 }).map((bytes) => ({ bytes })) },
);
export function bytesOf(b: Body): Buffer | undefined {
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

export interface FuzzRequest {
  method: string;
  target: string;
  auth: Auth;
  contentType: string | undefined;
  headers: Array<[string, string]>;
  body: Body;
}

/** Request arbitraries for one route template: mostly mutated examples where the route has some. */
export function requestFor(template: string, host: string, escrowId: string): fc.Arbitrary<FuzzRequest> {
  const examples = EXAMPLES[template];
  const random = randomRequest(template, host, escrowId);
  return examples ? fc.oneof({ weight: 1, arbitrary: random }, { weight: 2, arbitrary: mutatedExample(template, examples, escrowId) }) : random;
}

/** The template with its placeholders filled in, its fixed words mostly as they are. */
function pathFor(template: string, escrowId: string): fc.Arbitrary<string> {
  const parts = template
    .split('/')
    .slice(1)
    .map((part) => {
      // `:path:versions` is a placeholder followed by a fixed action.
      const m = /^(:[a-z]+)(.*)$/.exec(part);
      if (!m) return part === '' ? fc.constant('') : fixedWord(part);
      return fc.tuple(filler(m[1]!, escrowId), m[2] ? fixedWord(m[2]) : fc.constant('')).map(([a, b]) => a + b);
    });
  return fc.tuple(...parts).map((p) => `/${p.join('/')}`);
}

function randomRequest(template: string, host: string, escrowId: string): fc.Arbitrary<FuzzRequest> {
  return fc.record({
    method: fc.constantFrom(...METHODS),
    target: fc
      .tuple(pathFor(template, escrowId), queryString, fc.oneof({ weight: 12, arbitrary: fc.constant('none' as const) }, { weight: 1, arbitrary: fc.constantFrom(...MUTATIONS) }))
      .map(([p, q, how]) => mutate(p, how, host) + q),
    auth: fc.oneof({ weight: 6, arbitrary: fc.constantFrom<Auth>('root', 'limited', 'none') }, { weight: 2, arbitrary: fc.constantFrom(...AUTH) }),
    contentType: fc.constantFrom(...CONTENT_TYPES),
    headers: extraHeaders,
    body,
  });
}

// ---------------------------------------------------------------- known-good examples, mutated

interface Example {
  method: string;
  query?: Record<string, string>;
  body?: unknown;
}

const rule = { namespace: 'fz', path: 'app/*', capabilities: ['read', 'list'], effect: 'allow' };
const versions = { method: 'POST', body: { versions: [1] } };
/** A valid request per route (by template), as the README documents it. Routes without one are fuzzed at random only. */
const EXAMPLES: Record<string, Example[]> = {
  '/v1/secrets/:ns/:path': [
    { method: 'PUT', body: { data: { password: 'x' }, type: 'password', metadata: { note: 'n' }, cas: 1, max_versions: 5 } },
    { method: 'GET', query: { version: '1' } },
  ],
  '/v1/secrets/:ns/:path:rollback': [{ method: 'POST', body: { version: 1, cas: 1 } }],
  '/v1/secrets/:ns/:path:delete': [versions],
  '/v1/secrets/:ns/:path:undelete': [versions],
  '/v1/secrets/:ns/:path:destroy': [versions],
  '/v1/secrets/:ns/:folder/': [{ method: 'GET', query: { recursive: 'true', limit: '10', cursor: 'x' } }],
  '/v1/bulk/:ns/:folder': [{ method: 'GET', query: { limit: '10' } }],
  '/v1/namespaces': [
    { method: 'POST', body: { name: 'fz-new', description: 'd', rotation_period: 86_400 } },
    { method: 'GET', query: { limit: '10' } },
  ],
  '/v1/namespaces/:name': [{ method: 'PATCH', body: { description: 'd', rotation_period: 86_400 } }],
  '/v1/namespaces/:name/shred': [{ method: 'POST', body: { pending_window_days: 7 } }],
  '/v1/sys/init': [{ method: 'POST', body: { shares: 1, threshold: 1 } }],
  '/v1/sys/unseal': [{ method: 'POST', body: { share: 'x' } }],
  '/v1/sys/generate-root': [{ method: 'POST', body: { share: 'x' } }],
  '/v1/sys/rotate-root': [{ method: 'POST', body: { shares: ['x'], new_shares: 3, new_threshold: 2 } }],
  '/v1/sys/rotate-root/verify': [{ method: 'POST', body: { shares: ['x'] } }],
  '/v1/sys/seal-migrate': [{ method: 'POST', body: { to: 'pkcs11', shares: ['x'] } }],
  '/v1/sys/health': [{ method: 'GET', query: { standbyok: 'true', sealedcode: '200' } }],
  '/v1/sys/audit': [{ method: 'GET', query: { namespace: 'fz', path: 'app/db', identity: 'root', action: 'secret.read', outcome: 'success', since: '2024-01-01T00:00:00Z', order: 'asc', limit: '5', cursor: '1' } }],
  '/v1/sys/audit/hash': [{ method: 'POST', body: { input: 'x' } }],
  '/v1/sys/policies/:name': [{ method: 'PUT', body: { rules: [rule] } }],
  '/v1/sys/capabilities-self': [{ method: 'POST', body: { namespace: 'fz', path: 'app/db' } }],
  '/v1/auth/userpass/login': [{ method: 'POST', body: { username: 'fz-user', password: 'fuzz-password' } }],
  '/v1/auth/approle/login': [{ method: 'POST', body: { role_id: 'x', secret_id: 'y' } }],
  '/v1/auth/jwt/login': [{ method: 'POST', body: { role: 'fz-role', jwt: 'a.b.c' } }],
  '/v1/auth/cert/login': [{ method: 'POST', body: { role: 'fz-role' } }],
  '/v1/auth/token/renew-self': [{ method: 'POST', body: { increment: 60 } }],
  '/v1/auth/token/create': [{ method: 'POST', body: { policies: ['fz-limited'], ttl: 60, max_ttl: 120, display_name: 'd', renewable: true, metadata: { k: 'v' } } }],
  '/v1/auth/token/lookup-accessor': [{ method: 'POST', body: { accessor: 'x' } }],
  '/v1/auth/token/revoke-accessor': [{ method: 'POST', body: { accessor: 'x' } }],
  '/v1/auth/token/revoke-identity': [{ method: 'POST', body: { identity: 'token:nobody' } }],
  '/v1/auth/userpass/users/:name': [{ method: 'PUT', body: { password: 'long-enough', policies: ['fz-limited'], groups: ['fz-group'] } }],
  '/v1/auth/groups/:name': [{ method: 'PUT', body: { policies: ['fz-limited'], members: ['fz-user'] } }],
  '/v1/auth/approle/roles/:name': [
    { method: 'PUT', body: { policies: ['fz-limited'], token_ttl: 60, token_max_ttl: 120, secret_id_ttl: 60, secret_id_num_uses: 1, bound_cidrs: ['10.0.0.0/8'] } },
  ],
  '/v1/auth/approle/roles/:name/secret-id': [{ method: 'POST', body: { cidrs: ['10.0.0.0/8'] } }],
  '/v1/auth/approle/roles/:name/secret-id/revoke': [{ method: 'POST', body: { accessor: 'x' } }],
  '/v1/auth/jwt/issuers/:name': [{ method: 'PUT', body: { issuer: 'https://issuer.example', public_keys: ['PUBLIC_KEY'], algorithms: ['RS256'], clock_skew_seconds: 5 } }],
  '/v1/auth/jwt/roles/:name': [
    {
      method: 'PUT',
      body: { issuer: 'fz', bound_audiences: ['a'], bound_subject: 's', bound_claims: { '/a/b': ['x'] }, bound_claims_type: 'glob', user_claim: 'sub', claim_mappings: { c: 'd' }, policies: ['fz-limited'], token_ttl: 60 },
    },
  ],
  '/v1/auth/cert/roles/:name': [{ method: 'PUT', body: { allowed_common_names: ['x'], allowed_dns_sans: ['*.x'], allowed_uri_sans: ['spiffe://x/*'], allowed_organizations: ['o'], policies: ['fz-limited'], token_ttl: 60 } }],
  '/v1/byok/namespaces/:name/import-params': [{ method: 'GET', query: { algorithm: 'RSAES_OAEP_SHA_256' } }],
  '/v1/byok/namespaces/:name/import': [{ method: 'POST', body: { import_token: 'x', encrypted_key_material: 'eA==' } }],
  '/v1/byok/root/import': [{ method: 'POST', body: { import_token: 'x', encrypted_key_material: 'eA==' } }],
  '/v1/escrow/requests': [
    { method: 'POST', body: { namespace: 'fz', kek_version: 1, algorithm: 'RSAES_OAEP_SHA_256', public_key: 'PUBLIC_KEY', ttl_seconds: 3600 } },
    { method: 'GET', query: { namespace: 'fz' } },
  ],
};

/** One change to a JSON document: at the `at`-th node (in walk order) replace it, delete it, or add a field. */
interface Change {
  op: 'replace' | 'delete' | 'add';
  at: number;
  key: string;
  value: unknown;
}
const change: fc.Arbitrary<Change> = fc.record({ op: fc.constantFrom('replace', 'replace', 'replace', 'delete', 'add'), at: fc.nat(), key: fieldName, value: jsonValue });

function applyChange(doc: unknown, c: Change): unknown {
  const copy = structuredClone(doc);
  const nodes: Array<{ parent: Record<string, unknown> | unknown[] | null; key: string | number; value: unknown }> = [];
  const walk = (value: unknown, parent: Record<string, unknown> | unknown[] | null, key: string | number) => {
    nodes.push({ parent, key, value });
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, value, i));
    else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, value as Record<string, unknown>, k);
  };
  walk(copy, null, '');
  const node = nodes[c.at % nodes.length]!;
  if (c.op === 'add' && node.value !== null && typeof node.value === 'object' && !Array.isArray(node.value)) {
    (node.value as Record<string, unknown>)[c.key] = c.value;
    return copy;
  }
  if (node.parent === null) return c.op === 'delete' ? undefined : c.value;
  if (c.op === 'delete') {
    if (Array.isArray(node.parent)) node.parent.splice(node.key as number, 1);
    else delete node.parent[node.key as string];
  } else if (Array.isArray(node.parent)) node.parent[node.key as number] = c.value;
  else node.parent[node.key as string] = c.value;
  return copy;
}

/** A route's example with one or two hostile changes to its body or query, sent mostly as the right caller. */
function mutatedExample(template: string, examples: Example[], escrowId: string): fc.Arbitrary<FuzzRequest> {
  const queryValue = fc.oneof(fc.constantFrom(...QUERY_VALUES), fc.string({ unit: 'binary', maxLength: 10 }).map(percentEncoded));
  return fc
    .record({
      example: fc.constantFrom(...examples),
      changes: fc.array(change, { minLength: 1, maxLength: 2 }),
      queryChange: fc.option(fc.tuple(fc.oneof(fc.constantFrom(...QUERY_KEYS), fc.constant('')), queryValue)),
      path: pathFor(template, escrowId),
      auth: fc.oneof({ weight: 4, arbitrary: fc.constant<Auth>('root') }, { weight: 1, arbitrary: fc.constantFrom<Auth>('limited', 'none') }),
      contentType: fc.oneof({ weight: 4, arbitrary: fc.constant('application/json') }, { weight: 1, arbitrary: fc.constantFrom(...CONTENT_TYPES) }),
    })
    .map(({ example, changes, queryChange, path, auth, contentType }): FuzzRequest => {
      const query = { ...example.query };
      if (queryChange) query[queryChange[0] || Object.keys(query)[0] || 'x'] = queryChange[1];
      let json = example.body;
      if (json !== undefined) for (const c of changes) json = applyChange(json, c);
      const q = Object.entries(query).map(([k, v]) => `${k}=${v}`).join('&');
      return { method: example.method, target: q ? `${path}?${q}` : path, auth, contentType, headers: [], body: json === undefined ? undefined : { json } };
    });
}

/** Any path at all under a handful of prefixes: finds routes express serves that the route table does not name. */
export function strayRequest(host: string, escrowId: string): fc.Arbitrary<FuzzRequest> {
  const words = fc.constantFrom('v1', 'V1', 'v2', 'sys', 'secrets', 'bulk', 'namespaces', 'auth', 'byok', 'escrow', 'token', 'policies', 'audit', 'health', 'fz', escrowId);
  return requestFor('/:path', host, escrowId).chain((r) =>
    fc.array(fc.oneof(words, evilSegment), { minLength: 1, maxLength: 6 }).map((segments) => ({ ...r, target: `/${segments.join('/')}` })),
  );
}

