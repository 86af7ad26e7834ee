// The clients' side of the failover contract (README "Failover"): a server that stops and comes back
// on the same port (a restart, a crash under systemd) is ridden out by the SDK's and the CLI's
// default retry budget. Reads are retried through the outage; a write whose connection was refused
// is retried too (it provably never reached the server) and applied once; a budget of 0 fails at
// the first refusal while a client with the default budget is still waiting. The server uses the
// PKCS#11 seal, so a restarted one unseals itself before it listens (no sealed window).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CofferClient, type CofferError } from '@coffer/sdk';
import type { RunningServer } from '@coffer/server/server';
import { describeIfSoftHsm } from '../helpers/env.js';
import { freePort, runCli } from '../helpers/process.js';
import { api, createStore, startTestServer, storageKinds, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

const NS = 'failover';
/** After the client said it is retrying, the server stays down this long more (each retry waits 0–5 s). */
const OUTAGE_MS = 2_000;
/** How long a client may take (a loaded machine) to meet the closed port and say it will retry. */
const FIRST_RETRY_MS = 120_000;

describeIfSoftHsm('clients ride out a server restart on the same port', () => {
  let hsm: SoftHsm;
  let store: TestStore;
  let server: RunningServer | undefined;
  let port: number;
  let overrides: Record<string, unknown>;
  let token: string;
  let address: string;
  const home = mkdtempSync(join(tmpdir(), 'coffer-failover-home-'));

  const start = async () => {
    server = await startTestServer(store, overrides);
  };
  const stop = async () => {
    await server?.stop();
    server = undefined;
  };
  /**
   * Stops the server, lets `during` start its requests against the closed port and waits until the
   * client says it is retrying (the real condition: it met the refusal), then restarts the server.
   */
  async function outage<T>(during: (retrying: () => void) => Promise<T>): Promise<T> {
    await stop();
    let retrying!: () => void;
    const retried = new Promise<void>((resolve) => (retrying = resolve));
    const pending = during(retrying);
    pending.catch(() => undefined);
    let cap: NodeJS.Timeout | undefined;
    await Promise.race([retried, pending.then(() => undefined, () => undefined), new Promise((r) => (cap = setTimeout(r, FIRST_RETRY_MS)))]);
    clearTimeout(cap);
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    await start();
    return pending;
  }
  const cli = (args: string[], env: Record<string, string> = {}, input?: string, retrying?: () => void) =>
    runCli(['-n', NS, ...args], {
      env: { HOME: home, COFFER_ADDR: address, COFFER_TOKEN: token, ...env },
      ...(input !== undefined ? { input } : {}),
      ...(retrying ? { onStderr: (text: string) => /retrying for up to/.test(text) && retrying() } : {}),
    });

  beforeAll(async () => {
    hsm = createSoftHsm(['failover']);
    // PostgreSQL when there is one (a restart is quicker than reopening PGlite), else PGlite.
    store = await createStore(storageKinds().at(-1)!);
    port = await freePort();
    overrides = { ...hsm.config('failover'), port };
    await start();
    address = `http://127.0.0.1:${port}`;
    const init = await api(address, 'POST', '/v1/sys/init', { body: { recovery_shares: 1, recovery_threshold: 1 } });
    expect(init.status).toBe(200);
    token = init.body.root_token as string;
    const sdk = new CofferClient({ address, token });
    await sdk.namespaces.create(NS);
    await sdk.secrets.put(NS, 'db', { password: 'one' });
  });
  afterAll(async () => {
    await stop();
    await store?.cleanup();
    hsm?.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  it('SDK: a read made while the server is down succeeds once it is back (default budget)', async () => {
    const read = await outage((retrying) => new CofferClient({ address, token, onRetry: retrying }).secrets.get(NS, 'db'));
    expect(read.data).toEqual({ password: 'one' });
  });

  it('SDK: a write whose connection was refused is retried, and applied once', async () => {
    const sdk = new CofferClient({ address, token });
    const before = (await sdk.secrets.get(NS, 'db')).version;
    const written = await outage((retrying) => new CofferClient({ address, token, onRetry: retrying }).secrets.put(NS, 'db', { password: 'two' }));
    expect(written.version).toBe(before + 1);
    const history = await sdk.secrets.history(NS, 'db');
    expect(Math.max(...history.versions.map((v) => v.version))).toBe(before + 1);
  });

  it('SDK: a budget of 0 fails at the first refusal, while a default client is still retrying', async () => {
    const fast = new CofferClient({ address, token, retryBudgetMs: 0 });
    const patient = new CofferClient({ address, token });
    await stop();
    const waiting = patient.secrets.get(NS, 'db');
    waiting.catch(() => undefined);
    const err = await fast.secrets.get(NS, 'db').then(
      () => null,
      (e: unknown) => e as CofferError,
    );
    expect(err).toMatchObject({ status: 0, code: 'unavailable' });
    expect(err?.message).toContain('ECONNREFUSED');
    // Restarted only now: the patient client's success shows it had not given up when the fast one did.
    await start();
    expect((await waiting).data).toEqual({ password: 'two' });
  });

  it('CLI: a read and a write made while the server is down succeed once it is back; --retry-budget 0 fails at once (exit 5)', async () => {
    const read = await outage((retrying) => cli(['secret', 'get', 'db', '--field', 'password'], {}, undefined, retrying));
    expect(read).toMatchObject({ code: 0 });
    expect(read.stdout.trim()).toBe('two');
    // It said once, on stderr, that it was waiting and how to stop waiting.
    expect(read.stderr.match(/retrying for up to \d+ s \(--retry-budget 0/g)).toHaveLength(1);
    const write = await outage((retrying) => cli(['secret', 'put', 'db', 'password=-'], {}, 'three\n', retrying));
    expect(write.code).toBe(0);
    const history = await cli(['secret', 'history', 'db', '--format', 'json']);
    const versions = (JSON.parse(history.stdout) as { versions: Array<{ version: number }> }).versions.map((v) => v.version);
    expect(Math.max(...versions)).toBe(3);
    await stop();
    const patient = cli(['secret', 'get', 'db', '--field', 'password'], { COFFER_MAX_RETRIES: '100' });
    const fast = await cli(['--retry-budget', '0', 'secret', 'get', 'db', '--field', 'password']);
    expect(fast.code).toBe(5);
    expect(fast.stderr).toContain('unavailable');
    expect(fast.stderr).not.toContain('retrying');
    const badFlag = await cli(['--max-retries', 'many', 'secret', 'get', 'db']);
    expect(badFlag.code).toBe(2);
    await start();
    const waited = await patient;
    expect(waited.code).toBe(0);
    expect(waited.stdout.trim()).toBe('three');
  });
});
