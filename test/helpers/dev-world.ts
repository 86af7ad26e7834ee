// One `coffer-server --dev` process per test file with a namespace, an SDK client and the built
// CLI bound to that namespace, plus a home directory and a scratch directory that are removed
// afterwards. Registers its own beforeAll/afterAll: call it at the top level of a test file.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CofferClient } from '@coffer/sdk';
import { START_TIMEOUT_MS, runCli, startDevServer, type CliResult, type DevServer } from './process.js';

export interface DevWorld {
  server: DevServer;
  client: CofferClient;
  /** HOME for the CLI (its config and token helper files). */
  home: string;
  /** Scratch files of the test. */
  dir: string;
  /** `coffer -n <ns> …` as the root token. */
  coffer(args: string[], input?: string): Promise<CliResult>;
  /** The same, failing the test unless it exits 0; gives stdout. */
  ok(args: string[], input?: string): Promise<string>;
}

export function devWorld(ns: string, prefix: string): DevWorld {
  const world = {
    coffer(args: string[], input?: string): Promise<CliResult> {
      return runCli(['-n', ns, ...args], { input, env: { HOME: world.home, COFFER_ADDR: world.server.address, COFFER_TOKEN: world.server.rootToken } });
    },
    async ok(args: string[], input?: string): Promise<string> {
      const r = await world.coffer(args, input);
      if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    },
  } as DevWorld;

  beforeAll(async () => {
    world.home = await mkdtemp(path.join(os.tmpdir(), `${prefix}-home-`));
    world.dir = await mkdtemp(path.join(os.tmpdir(), `${prefix}-files-`));
    world.server = await startDevServer();
    world.client = new CofferClient({ address: world.server.address, token: world.server.rootToken });
    await world.client.namespaces.create(ns);
  }, START_TIMEOUT_MS + 30_000);

  afterAll(async () => {
    await world.server?.stop();
    for (const d of [world.home, world.dir]) if (d) await rm(d, { recursive: true, force: true });
  });
  return world;
}
