// A KEK rewrap survives kill -9: a real coffer-server over real PostgreSQL is killed at several
// points of a slowed-down rewrap job (small batches with a pause between them), restarted and
// unsealed; every secret still reads at each step, progress never goes back, and the job completes.
// The namespace also holds KMS named keys: their versions move last, and each still opens after.
import { api, initAndUnseal, unsealWith } from '../helpers/server.js';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';
import { startServerProcess, type ServerProcess } from '../helpers/process.js';

const SECRETS = 60;
/** KMS key versions under the old KEK: two of an AES key, one of an Ed25519 key. */
const KEY_VERSIONS = 3;
const b64 = (s: string) => Buffer.from(s).toString('base64');
const running: ServerProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
});

describeIfPostgres('KEK rewrap across kill -9 (PostgreSQL, real processes)', () => {
  let database: TestDatabase;
  let token: string;
  let shares: string[];
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  const env = () => ({
    COFFER_DATABASE_URL: database.url,
    // 5 secrets per batch, 150 ms apart: 12 batches, about two seconds of job to aim kills at.
    COFFER_KEK_REWRAP_BATCH_SIZE: '5',
    COFFER_KEK_REWRAP_BATCH_DELAY_MS: '150',
    COFFER_KEK_JOB_INTERVAL_SECONDS: '1',
  });
  async function start(): Promise<ServerProcess> {
    const p = await startServerProcess(env());
    running.push(p);
    return p;
  }
  const path = (i: number) => `app/s${String(i).padStart(3, '0')}`;
  const progress = async (url: string) => (await api(url, 'GET', '/v1/namespaces/crash/kek', { token })).body;

  async function expectAllRead(url: string): Promise<void> {
    const results = await Promise.all(
      Array.from({ length: SECRETS }, async (_, i) => {
        const r = await api(url, 'GET', `/v1/secrets/crash/${path(i)}`, { token });
        return r.status === 200 && r.body.data.value === `value-${i}` ? null : `${path(i)}: ${r.status} ${r.text}`;
      }),
    );
    expect(results.filter(Boolean)).toEqual([]);
  }

  /** Polls until the job has rewrapped at least `atLeast` DEKs (or completed), then kill -9s the server. */
  async function killWhen(p: ServerProcess, atLeast: number): Promise<number> {
    const deadline = Date.now() + 30_000;
    let seen = 0;
    for (;;) {
      const job = (await progress(p.url)).rewrap;
      seen = job.rewrapped;
      if (job.state === 'completed') throw new Error('the job completed before the kill point: slow it down further');
      if (seen >= atLeast) break;
      if (Date.now() > deadline) throw new Error(`no progress to ${atLeast} (at ${seen})\n${p.output()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await p.stop('SIGKILL')).toBe('SIGKILL');
    return seen;
  }

  it('resumes after each kill, never loses progress, and completes with every secret readable', async () => {
    let p = await start();
    ({ token, shares } = await initAndUnseal(p.url, 3, 2));
    expect((await api(p.url, 'POST', '/v1/namespaces', { token, body: { name: 'crash' } })).status).toBe(201);
    for (let i = 0; i < SECRETS; i += 10) {
      const batch = Array.from({ length: 10 }, (_, j) => api(p.url, 'PUT', `/v1/secrets/crash/${path(i + j)}`, { token, body: { data: { value: `value-${i + j}` } } }));
      for (const w of await Promise.all(batch)) expect(w.status).toBe(200);
    }
    const kms = (path: string, body: unknown) => api(p.url, 'POST', `/v1/kms/crash/${path}`, { token, body });
    expect((await kms('keys/data', { type: 'aes256-gcm' })).status).toBe(201);
    expect((await kms('keys/data/rotate', {})).status).toBe(200);
    expect((await kms('keys/release', { type: 'ed25519' })).status).toBe(201);
    const sealed = [(await kms('encrypt/data', { plaintext: b64('one'), key_version: 1 })).body.ciphertext, (await kms('encrypt/data', { plaintext: b64('two') })).body.ciphertext];
    const signature = (await kms('sign/release', { input: b64('artifact') })).body.signature;
    const rotated = await api(p.url, 'POST', '/v1/namespaces/crash/kek/rotate', { token, body: {} });
    expect(rotated.body).toMatchObject({ version: 2, deks_to_rewrap: SECRETS + KEY_VERSIONS });

    // Kill at once (the first batch may or may not have committed), then at three points mid-job.
    expect(await p.stop('SIGKILL')).toBe('SIGKILL');
    let lastSeen = 0;
    for (const killAt of [10, 25, 45]) {
      p = await start();
      await unsealWith(p.url, shares.slice(0, 2));
      const after = (await progress(p.url)).rewrap;
      expect(after.target_version).toBe(2);
      // Committed progress survived the kill; the batch in flight (if any) rolled back and is redone.
      expect(after.rewrapped).toBeGreaterThanOrEqual(lastSeen);
      expect(after.rewrapped + after.remaining).toBe(SECRETS + KEY_VERSIONS);
      // Reads while the resumed job runs.
      await expectAllRead(p.url);
      lastSeen = await killWhen(p, killAt);
    }

    p = await start();
    await unsealWith(p.url, shares.slice(0, 2));
    const deadline = Date.now() + 60_000;
    let status = await progress(p.url);
    while (status.rewrap.state !== 'completed') {
      if (Date.now() > deadline) throw new Error(`rewrap did not complete: ${JSON.stringify(status.rewrap)}\n${p.output()}`);
      await new Promise((r) => setTimeout(r, 50));
      status = await progress(p.url);
    }
    expect(status.rewrap).toMatchObject({ state: 'completed', target_version: 2, total: SECRETS + KEY_VERSIONS, rewrapped: SECRETS + KEY_VERSIONS, remaining: 0 });
    expect(status.versions.map((v: { version: number; state: string }) => [v.version, v.state])).toEqual([
      [1, 'retired'],
      [2, 'active'],
    ]);
    await expectAllRead(p.url);
    const opened = (path: string, body: unknown) => api(p.url, 'POST', `/v1/kms/crash/${path}`, { token, body });
    expect((await opened('decrypt/data', { ciphertext: sealed[0] })).body.plaintext).toBe(b64('one'));
    expect((await opened('decrypt/data', { ciphertext: sealed[1] })).body.plaintext).toBe(b64('two'));
    expect((await opened('verify/release', { input: b64('artifact'), signature })).body).toEqual({ valid: true });
    await p.stop();
  });
});
