#!/usr/bin/env node
// Baseline for `npm run bench`: the smallest express 5 JSON server, run as its own process.
//
//   node scripts/bench/hello.mjs [port]        (or BENCH_HELLO_PORT; default: a random free port)
//
// GET /hello -> {"hello":"world"}. Listens on 127.0.0.1 and prints `listening <url>` once ready.
// express is a dependency of the server workspace, so it is resolved from there (with npm
// workspaces it is usually hoisted to the root node_modules, but it need not be).

import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const requireFromServer = createRequire(path.join(root, 'server', 'package.json'));
const { default: express } = await import(pathToFileURL(requireFromServer.resolve('express')).href);

const port = Number(process.argv[2] ?? process.env.BENCH_HELLO_PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`bench-hello: invalid port ${process.argv[2] ?? process.env.BENCH_HELLO_PORT}\n`);
  process.exit(2);
}

const app = express();
app.get('/hello', (_req, res) => {
  res.json({ hello: 'world' });
});

// Same keep-alive settings as the Coffer server, so both are measured over the same connections.
const server = http.createServer(app);
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, '127.0.0.1', () => {
  const { port: actual } = server.address();
  process.stdout.write(`listening http://127.0.0.1:${actual}\n`);
});

const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
