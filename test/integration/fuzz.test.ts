// Property-based fuzzing of the whole HTTP surface: every route template the server names
// (ROUTE_TEMPLATES: the templates of the route table, http/route-table.ts, so a declared route is fuzzed too), instantiated
// with hostile path segments, queries, methods, headers and bodies, sent with a root token, a
// limited token, broken tokens or none; routes with a known-good example (test/helpers/fuzz.ts)
// also get that example with one or two parts made hostile. For every request: no 5xx (integrity_error aside), a
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
import { BODY_LIMIT, bytesOf, expand, requestFor, strayRequest, type Auth, type FuzzRequest } from '../helpers/fuzz.js';

const RUNS = Number(process.env.COFFER_FUZZ_RUNS ?? 20);
const SEED = process.env.COFFER_FUZZ_SEED === undefined ? undefined : Number(process.env.COFFER_FUZZ_SEED);
const PATH = process.env.COFFER_FUZZ_PATH;
/** An answer slower than this is a hang (generous: a busy 2-core machine, argon2 and RSA key generation on some routes). */
const REQUEST_TIMEOUT_MS = 20_000;

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
      // Health answers with the status the caller asked for (?activecode=…): with its body, or for a
      // HEAD (no body) exactly the code asked for.
      if (template === '/v1/sys/health' && json && 'initialized' in json) return null;
      if (template === '/v1/sys/health' && r.method === 'HEAD' && askedHealthCodes(r.target).includes(a.status)) return null;
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


  /** The status codes a health request asks for (?activecode=, ?sealedcode=). */
  const askedHealthCodes = (target: string): number[] => {
    const query = new URL(target, 'http://127.0.0.1').searchParams;
    return [...query.getAll('activecode'), ...query.getAll('sealedcode')].map(Number);
  };

  const property = (arb: fc.Arbitrary<FuzzRequest>) =>
    fc.asyncProperty(arb, async (r) => {
      const answer = await send(r);
      const wrong = problem(r, answer);
      if (wrong) {
        // The answer's start, tokens blanked (a failure report is printed in CI logs).
        const got = 'error' in answer ? '' : ` → ${answer.status} ${answer.text.slice(0, 300).replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '<token>')}`;
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
