// The fixture of the suites about decrypted values the read cache keeps (integration/
// bulk-value-cache and read-value-cache): one server per storage kind, its cache reset before each
// test so that each counts only what its own reads kept, and the warm-up that reads until
// something is kept and then once more from it.
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, eventually, initAndUnseal, startTestServer, type ApiResponse, type StorageKind, type TestStore } from './server.js';

/** Registers the server's lifecycle hooks; call the result (in a hook or test) for the server, its root token and shares. */
export function keptValuesServer(kind: StorageKind): () => { s: RunningServer; token: string; shares: string[] } {
  let store: TestStore | undefined;
  let s: RunningServer | undefined;
  let token = '';
  let shares: string[] = [];
  beforeAll(async () => {
    store = await createStore(kind);
    s = await startTestServer(store);
    ({ token, shares } = await initAndUnseal(s.url));
  });
  beforeEach(() => s!.core.readCache.reset(s!.storage.changes.up));
  afterAll(async () => {
    await s?.stop();
    await store?.cleanup();
  });
  return () => ({ s: s!, token, shares });
}

/**
 * Repeats `request` until the server keeps something (`held` above 0: a change's notification
 * echoed back by PostgreSQL may arrive during the first and keep it out), then sends it once more,
 * served from what was kept: it must say the same, byte for byte. Returns that second answer.
 */
export async function warmUntilKept<T>(request: () => Promise<ApiResponse<T>>, held: () => number): Promise<ApiResponse<T>> {
  const first = await eventually(request, (r) => r.status !== 200 || held() > 0);
  expect(first.status).toBe(200);
  expect(held()).toBeGreaterThan(0);
  const second = await request();
  expect(second.text).toBe(first.text);
  return second;
}

/**
 * Runs the namespace's KEK rewrap by hand, batch after batch, until the server reports it completed
 * (the server's own rewrap job may hold the namespace meanwhile: a batch then answers 'busy').
 */
export async function rewrapUntilCompleted(s: RunningServer, token: string, namespace: string): Promise<void> {
  const kek = s.core.services().kek;
  const id = (await s.core.services().namespaces.resolve(namespace)).id;
  const state = await eventually(
    async () => {
      await kek.rewrapBatch(id);
      return (await api(s.url, 'GET', `/v1/namespaces/${namespace}/kek`, { token })).body.rewrap.state as string;
    },
    (st) => st === 'completed',
    30_000,
  );
  expect(state).toBe('completed');
}
