// End to end: the built `coffer` CLI against a real `coffer-server --dev` process.
// Each command runs as its own process with a throwaway HOME, as a user would run it.

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { runCli, startDevServer, type CliResult, type DevServer } from '../helpers/process.js';

const NS = 'e2e';
/** Distinct, recognisable values, so a leak into any output can be searched for. */
const secretValue = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;

let server: DevServer;
let home: string;

/** Runs coffer as a user with COFFER_ADDR and COFFER_TOKEN exported; `env` overrides (undefined unsets). */
function coffer(args: string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  return runCli(args, {
    input: options.input,
    env: { HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken, ...options.env },
  });
}

/** Like `coffer`, but the command must succeed; returns stdout. */
async function ok(args: string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<string> {
  const result = await coffer(args, options);
  if (result.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

async function okJson<T>(args: string[]): Promise<T> {
  return JSON.parse(await ok([...args, '--format', 'json'])) as T;
}

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-home-'));
  server = await startDevServer();
  await ok(['ns', 'create', NS, '--description', 'end-to-end tests']);
});

afterAll(async () => {
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

describe('coffer CLI against a real server', () => {
  it('status shows an initialised, unsealed server', async () => {
    expect(await ok(['status'])).toMatch(/^Sealed\s+false$/m);
    expect(await okJson(['status'])).toMatchObject({ initialized: true, sealed: false, seal_type: 'shamir' });
  });

  it('creates, lists, shows and deletes namespaces', async () => {
    const created = await okJson<{ name: string; description: string; kek: { current_version: number } }>([
      'ns', 'create', 'scratch', '--description', 'temporary',
    ]);
    expect(created).toMatchObject({ name: 'scratch', description: 'temporary', kek: { current_version: 1 } });
    expect(await ok(['ns', 'list'])).toMatch(/^scratch\s+temporary\s+\S+$/m);
    expect(await ok(['ns', 'get', 'scratch'])).toMatch(/^Secrets\s+0$/m);

    const dup = await coffer(['ns', 'create', 'scratch']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/^Error: .* \(code already_exists, request [0-9a-f-]{36}\)\n$/);

    expect(await ok(['ns', 'delete', 'scratch'])).toContain('Deleted namespace scratch');
    expect((await coffer(['ns', 'get', 'scratch'])).code).toBe(4);
  });

  it('writes a secret whose value comes from stdin, and reads it back as a table, JSON and one raw field', async () => {
    const value = secretValue('stdin');
    const put = await coffer(['-n', NS, 'secret', 'put', 'db/password', 'password=-', 'user=app', '--type', 'password'], { input: `${value}\n` });
    expect(put.code).toBe(0);
    expect(put.stdout).toMatch(/^Version\s+1$/m);

    const table = await ok(['-n', NS, 'secret', 'get', 'db/password']);
    expect(table).toMatch(/^Type\s+password$/m);
    expect(table).toMatch(new RegExp(`^password\\s+${value}$`, 'm')); // echo's newline is not part of the value
    expect(table).toMatch(/^user\s+app$/m);

    const json = await okJson<{ path: string; version: number; type: string; data: Record<string, string> }>(['secret', 'get', 'db/password', '-n', NS]);
    expect(json).toMatchObject({ namespace: NS, path: 'db/password', version: 1, type: 'password', data: { password: value, user: 'app' } });

    // Exactly the value: no decoration, no newline when stdout is not a terminal.
    expect(await ok(['-n', NS, 'secret', 'get', 'db/password', '--field', 'password'])).toBe(value);
    expect(await ok(['secret', 'get', `coffer://${NS}/db/password#user`])).toBe('app');
  });

  it('takes values from files (exactly) and from --data-file, and reads older versions', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-files-'));
    try {
      const pem = `-----BEGIN KEY-----\n${secretValue('file')}\n-----END KEY-----\n`;
      await writeFile(path.join(dir, 'key.pem'), pem);
      await writeFile(path.join(dir, 'data.json'), JSON.stringify({ api_key: 'from-json', region: 'eu' }));

      await ok(['-n', NS, 'secret', 'put', 'svc/api', `key=@${path.join(dir, 'key.pem')}`]);
      await ok(['-n', NS, 'secret', 'put', 'svc/api', '--data-file', path.join(dir, 'data.json'), 'region=us']);

      expect(await ok(['-n', NS, 'secret', 'get', 'svc/api', '--version', '1', '--field', 'key'])).toBe(pem);
      expect((await okJson<{ data: Record<string, string> }>(['-n', NS, 'secret', 'get', 'svc/api'])).data).toEqual({ api_key: 'from-json', region: 'us' });
      expect(await ok(['secret', 'get', `coffer://${NS}/svc/api#api_key?version=2`])).toBe('from-json');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('lists a folder, its sub-folders and, recursively, every path', async () => {
    await ok(['-n', NS, 'secret', 'put', 'list/a', 'v=1']);
    await ok(['-n', NS, 'secret', 'put', 'list/sub/b', 'v=2']);
    await ok(['-n', NS, 'secret', 'put', 'list/sub/deeper/c', 'v=3']);

    expect(await ok(['-n', NS, 'secret', 'list', 'list'])).toBe('a\nsub/\n');
    expect(await ok(['-n', NS, 'secret', 'list', 'list/', '--recursive'])).toBe('a\nsub/b\nsub/deeper/c\n');
    expect(await okJson(['-n', NS, 'secret', 'list', 'list/sub'])).toEqual({ namespace: NS, folder: 'list/sub/', keys: ['b', 'deeper/'], next_cursor: null });
    expect(await ok(['-n', NS, 'secret', 'list'])).toContain('list/\n');
  });

  it('shows the history and rolls back to an earlier version as a new version', async () => {
    const first = secretValue('v1');
    const second = secretValue('v2');
    await ok(['-n', NS, 'secret', 'put', 'hist/token', 'token=-', '--type', 'token'], { input: first });
    await ok(['-n', NS, 'secret', 'put', 'hist/token', 'token=-', '--type', 'token', '--cas', '1'], { input: second });

    expect(await ok(['-n', NS, 'secret', 'history', 'hist/token'])).toMatch(/^VERSION\s+TYPE\s+CREATED\s+STATE\n2\s+token\s+\S+\s+current\n1\s+token\s+\S+\n$/);

    expect(await ok(['-n', NS, 'secret', 'rollback', 'hist/token', '--version', '1'])).toMatch(/^Version\s+3$/m);
    expect(await ok(['-n', NS, 'secret', 'get', 'hist/token', '--field', 'token'])).toBe(first);
    const history = await okJson<{ current_version: number; versions: Array<{ version: number }> }>(['-n', NS, 'secret', 'history', 'hist/token']);
    expect(history.current_version).toBe(3);
    expect(history.versions.map((v) => v.version)).toEqual([3, 2, 1]);
  });

  it('soft-deletes and undeletes the latest version, destroys named versions, and purges', async () => {
    await ok(['-n', NS, 'secret', 'put', 'del/x', 'v=one']);
    await ok(['-n', NS, 'secret', 'put', 'del/x', 'v=two']);

    expect(await ok(['-n', NS, 'secret', 'delete', 'del/x'])).toBe(`Deleted version 2 of ${NS}:del/x\n`);
    const deleted = await coffer(['-n', NS, 'secret', 'get', 'del/x']);
    expect(deleted.code).toBe(4);
    expect(deleted.stderr).toContain('is deleted');

    await ok(['-n', NS, 'secret', 'undelete', 'del/x']);
    expect(await ok(['-n', NS, 'secret', 'get', 'del/x', '--field', 'v'])).toBe('two');

    expect(await okJson(['-n', NS, 'secret', 'destroy', 'del/x', '--versions', '1'])).toEqual({ namespace: NS, path: 'del/x', versions: [1] });
    expect((await coffer(['-n', NS, 'secret', 'get', 'del/x', '--version', '1'])).code).toBe(4);
    expect(await ok(['-n', NS, 'secret', 'history', 'del/x'])).toMatch(/^1\s+generic\s+\S+\s+destroyed$/m);

    expect(await ok(['-n', NS, 'secret', 'purge', 'del/x'])).toBe(`Purged ${NS}:del/x (2 versions removed)\n`);
    expect((await coffer(['-n', NS, 'secret', 'history', 'del/x'])).code).toBe(4);
  });

  describe('exit codes', () => {
    it('4 when a secret, a field or a namespace does not exist', async () => {
      const missing = await coffer(['-n', NS, 'secret', 'get', 'no/such/secret']);
      expect(missing.code).toBe(4);
      expect(missing.stderr).toMatch(/^Error: secret "no\/such\/secret" not found \(code not_found, request [0-9a-f-]{36}\)\n$/);
      expect(missing.stdout).toBe('');

      await ok(['-n', NS, 'secret', 'put', 'exit/field', 'a=1']);
      expect((await coffer(['-n', NS, 'secret', 'get', 'exit/field', '--field', 'b'])).code).toBe(4);
      expect((await coffer(['-n', 'no-such-ns', 'secret', 'get', 'x'])).code).toBe(4);
    });

    it('3 for a bad token, a missing token or a token file others can read', async () => {
      const bad = await coffer(['-n', NS, 'secret', 'list'], { env: { COFFER_TOKEN: 'not-a-token' } });
      expect(bad.code).toBe(3);
      expect(bad.stderr).toContain('code unauthenticated');

      const none = await coffer(['-n', NS, 'secret', 'list'], { env: { COFFER_TOKEN: undefined } });
      expect(none.code).toBe(3);
      expect(none.stderr).toContain('no token');
    });

    it('2 for usage errors: missing arguments, unknown options, bad paths, no data, no namespace', async () => {
      for (const args of [
        ['secret', 'get'],
        ['secret', 'get', 'x', '-n', NS, '--bogus'],
        ['-n', NS, 'secret', 'get', 'a//b'],
        ['-n', NS, 'secret', 'get', '../etc/passwd'],
        ['-n', NS, 'secret', 'get', 'x', '--version', 'latest'],
        ['-n', NS, 'secret', 'put', 'x'],
        ['-n', NS, 'secret', 'put', 'x', 'no-equals-sign'],
        ['-n', NS, 'secret', 'put', 'x', 'k=-'], // stdin is empty
        ['-n', NS, 'secret', 'put', 'x', 'a=-', 'b=-'],
        ['secret', 'get', 'x'],
        ['no-such-command'],
      ]) {
        const result = await coffer(args);
        expect({ args, code: result.code }).toEqual({ args, code: 2 });
        expect(result.stderr).not.toBe('');
      }
    });

    it('5 when the server cannot be reached', async () => {
      // A port that was free a moment ago: nothing listens there.
      const port = await new Promise<number>((resolve) => {
        const probe = net.createServer().listen(0, '127.0.0.1', () => {
          const { port } = probe.address() as net.AddressInfo;
          probe.close(() => resolve(port));
        });
      });
      // No retries (a closed port is otherwise retried for the failover budget, 30 s: cli-failover tests that).
      const result = await coffer(['status'], { env: { COFFER_ADDR: `http://127.0.0.1:${port}`, COFFER_RETRY_BUDGET: '0' } });
      expect(result.code).toBe(5);
      expect(result.stderr).toContain('code unavailable');
    });
  });

  it('never shows a secret value or the token in an error', async () => {
    const value = secretValue('leak-check');
    await ok(['-n', NS, 'secret', 'put', 'leak/pw', 'password=-'], { input: value });
    const failures = [
      // cas conflict with the value on stdin
      await coffer(['-n', NS, 'secret', 'put', 'leak/pw', 'password=-', '--cas', '0'], { input: value }),
      // the server's type check refuses the data
      await coffer(['-n', NS, 'secret', 'put', 'leak/cert', 'certificate=-', '--type', 'certificate'], { input: value }),
      // malformed JSON (JSON.parse would quote it)
      await coffer(['-n', NS, 'secret', 'put', 'leak/json', '--data-file', '-'], { input: `{"password": ${value}}` }),
      // a value typed where KEY=VALUE belongs, and a value mistaken for a file name
      await coffer(['-n', NS, 'secret', 'put', 'leak/arg', value]),
      await coffer(['-n', NS, 'secret', 'put', 'leak/arg', `password=@${value}`]),
      // a field that does not exist
      await coffer(['-n', NS, 'secret', 'get', 'leak/pw', '--field', 'nope']),
    ];
    for (const result of failures) {
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/^Error: /);
      expect(result.stderr).not.toContain(value);
      expect(result.stderr).not.toContain(server.rootToken);
      expect(result.stdout).not.toContain(value);
    }
    expect(failures[0]!.stderr).toContain('code cas_mismatch');
  });

  it('reads the token from $XDG_CONFIG_HOME/coffer/token, only when no one else can read it', async () => {
    const config = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-config-'));
    try {
      const file = path.join(config, 'coffer', 'token');
      await mkdir(path.dirname(file));
      await writeFile(file, `${server.rootToken}\n`, { mode: 0o600 });
      const env = { COFFER_TOKEN: undefined, XDG_CONFIG_HOME: config };
      expect(await ok(['ns', 'get', NS], { env })).toMatch(/^Name\s+e2e$/m);

      await chmod(file, 0o644);
      const open = await coffer(['ns', 'get', NS], { env });
      expect(open.code).toBe(1);
      expect(open.stderr).toContain('chmod 600');
      expect(open.stderr).not.toContain(server.rootToken);
    } finally {
      await rm(config, { recursive: true, force: true });
    }
  });

  it('has --help with an example on every command', async () => {
    const commands = [
      [],
      ['status'],
      ['operator'],
      ['operator', 'init'],
      ['operator', 'unseal'],
      ['operator', 'seal'],
      ['ns'],
      ...['create', 'list', 'get', 'delete'].map((c) => ['ns', c]),
      ['secret'],
      ...['put', 'get', 'list', 'history', 'rollback', 'delete', 'undelete', 'destroy', 'purge'].map((c) => ['secret', c]),
    ];
    const results = await Promise.all(commands.map((c) => coffer([...c, '--help'])));
    results.forEach((result, i) => {
      expect({ command: commands[i], code: result.code }).toEqual({ command: commands[i], code: 0 });
      expect(result.stdout).toMatch(/^Usage: coffer/);
      expect(result.stdout).toContain('\nExamples:\n  $ ');
    });
  });

  // Last: it seals the shared server (and unseals it again).
  it('seal makes data commands exit 5 until unseal reads a share from stdin; data survives', async () => {
    const value = secretValue('survivor');
    await ok(['-n', NS, 'secret', 'put', 'seal/kept', 'v=-'], { input: value });

    await ok(['operator', 'seal']);
    const status = await coffer(['status']);
    expect(status.code).toBe(5);
    expect(status.stdout).toMatch(/^Sealed\s+true$/m);
    const sealed = await coffer(['-n', NS, 'secret', 'get', 'seal/kept']);
    expect(sealed.code).toBe(5);
    expect(sealed.stderr).toContain('code sealed');

    const unseal = await coffer(['operator', 'unseal', '--format', 'json'], { input: `${server.unsealShare}\n` });
    expect(unseal.code).toBe(0);
    expect(JSON.parse(unseal.stdout)).toMatchObject({ initialized: true, sealed: false });
    expect(await ok(['-n', NS, 'secret', 'get', 'seal/kept', '--field', 'v'])).toBe(value);
  });
});
