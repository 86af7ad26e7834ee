// The CLI's node:http fetch stand-in, through the SDK's transport: answers, error bodies, refused
// connections and timeouts must look to the SDK exactly as the global fetch's do.

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CofferClient, CofferError } from '@coffer/sdk';
import { nodeFetch } from '@coffer/cli/http-fetch';
import { freePort } from '../helpers/process.js';
import { CertDir } from '../helpers/tls.js';

let server: Server;
let base: string;
const seen: Array<{ method?: string; url?: string; auth?: string; body: string; chunked?: boolean }> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, body, chunked: req.headers['transfer-encoding'] === 'chunked' });
      if (req.url?.startsWith('/v1/sys/seal-status')) {
        res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'r1' });
        res.end(JSON.stringify({ initialized: true, sealed: false }));
      } else if (req.url?.startsWith('/v1/sys/restore')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ restored: { secrets: 1 }, seal_type: 'shamir', root_version: 1, sealed: false }));
      } else if (req.url?.startsWith('/v1/namespaces')) {
        res.writeHead(409, { 'content-type': 'application/json', 'x-request-id': 'r2' });
        res.end(JSON.stringify({ error: { code: 'already_exists', message: 'namespace exists', requestId: 'r2' } }));
      }
      // anything else: never answered (timeout)
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const client = (address = base, timeoutMs = 5000) => new CofferClient({ address, token: 'tok', fetch: nodeFetch, retries: 0, timeoutMs });

it('sends method, headers and JSON body; parses the answer', async () => {
  expect(await client().sys.status()).toMatchObject({ sealed: false });
  await client().namespaces.create('app').catch(() => {});
  const post = seen.find((s) => s.method === 'POST')!;
  expect(post.auth).toBe('Bearer tok');
  expect(JSON.parse(post.body)).toEqual({ name: 'app' });
});

it('an error answer keeps status, code and request id', async () => {
  const err = (await client().namespaces.create('app').catch((e: unknown) => e)) as CofferError;
  expect(err).toBeInstanceOf(CofferError);
  expect([err.status, err.code, err.requestId]).toEqual([409, 'already_exists', 'r2']);
});

it('a refused connection is "unavailable" naming ECONNREFUSED; a silent server is a timeout', async () => {
  const refused = (await client(`http://127.0.0.1:${await freePort()}`).sys.status().catch((e: unknown) => e)) as CofferError;
  expect([refused.status, refused.code]).toEqual([0, 'unavailable']);
  expect(refused.message).toContain('ECONNREFUSED');
  const slow = (await client(base, 200).secrets.get('app', 'x').catch((e: unknown) => e)) as CofferError;
  expect([slow.status, slow.code]).toEqual([0, 'timeout']);
});

it('https: a private CA is refused by default and trusted with COFFER_CACERT', async () => {
  const certs = new CertDir();
  const cert = certs.server('coffer');
  const tls = createHttpsServer({ cert: cert.cert, key: readFileSync(cert.keyFile) }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ initialized: true, sealed: false }));
  });
  await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
  const address = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`;
  try {
    const refused = (await client(address).sys.status().catch((e: unknown) => e)) as CofferError;
    expect([refused.status, refused.code]).toEqual([0, 'unavailable']);
    expect(refused.message).toMatch(/SELF_SIGNED|self.signed/i);
    process.env.COFFER_CACERT = cert.certFile;
    expect(await client(address).sys.status()).toMatchObject({ sealed: false });
  } finally {
    delete process.env.COFFER_CACERT;
    tls.closeAllConnections();
    await new Promise((resolve) => tls.close(resolve));
    certs.cleanup();
  }
});

it('a restore from a stream is sent as it is read (chunked), the shares line first: CLI fetch and global fetch', async () => {
  const parts = ['{"coffer_backup":{}}\n', '{"table":"t"}\n', '{"end":{}}\n'];
  // One chunk per pull: the body exists only as it is read.
  const stream = () => {
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent < parts.length) controller.enqueue(new TextEncoder().encode(parts[sent++]));
        else controller.close();
      },
    });
  };
  for (const fetch of [nodeFetch, globalThis.fetch]) {
    const c = new CofferClient({ address: base, fetch, retries: 0, timeoutMs: 5000 });
    expect(await c.sys.restore(stream(), { shares: ['s1', 's2'] })).toMatchObject({ sealed: false });
    const got = seen.filter((s) => s.url === '/v1/sys/restore').pop()!;
    expect(got.chunked).toBe(true);
    expect(got.body).toBe(`{"coffer_restore":{"shares":["s1","s2"]}}\n${parts.join('')}`);
  }
});
