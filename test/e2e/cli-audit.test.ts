// End to end: `coffer audit` (the built CLI) against a real `coffer-server --dev` process,
// whose audit log records every request the CLI makes.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AuditEntry, AuditVerifyResult } from '@coffer/sdk';
import { CLI_MAIN, runCli, startDevServer, type CliResult, type DevServer } from '../helpers/process.js';

const NS = 'audit-e2e';
/** Distinct, recognisable values, so a leak into any output can be searched for. */
const secretValue = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;

let server: DevServer;
let home: string;
/** Every value written in this file: none may appear in audit output. */
const written: string[] = [];
/** Every stdout of an audit command that prints entries. */
const auditOutputs: string[] = [];

const userEnv = () => ({ HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken });

function coffer(args: string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  return runCli(args, { input: options.input, env: { ...userEnv(), ...options.env } });
}

async function ok(args: string[], options: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<string> {
  const result = await coffer(args, options);
  if (result.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  if (args[0] === 'audit') auditOutputs.push(result.stdout);
  return result.stdout;
}

async function search(args: string[], env?: Record<string, string | undefined>): Promise<AuditEntry[]> {
  return JSON.parse(await ok(['audit', 'search', ...args, '--format', 'json'], { env })) as AuditEntry[];
}

async function put(secretPath: string, value: string): Promise<void> {
  written.push(value);
  await ok(['-n', NS, 'secret', 'put', secretPath, 'password=-', '--type', 'password'], { input: `${value}\n` });
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-audit-home-'));
  server = await startDevServer();
  await ok(['ns', 'create', NS]);
  await put('db/password', secretValue('first'));
  await put('db/password', secretValue('second'));
  await ok(['-n', NS, 'secret', 'get', 'db/password']);
  await ok(['-n', NS, 'secret', 'list', 'db/']);
  await ok(['-n', NS, 'secret', 'get', 'db/password', '--version', '1', '--field', 'password']);
});

afterAll(async () => {
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

describe('coffer audit against a real server', () => {
  it('search --namespace finds the writes and reads, newest first, as JSON and as a table', async () => {
    const entries = (await search(['--namespace', NS])).filter((e) => e.action.startsWith('secret.'));
    expect(entries.map((e) => [e.action, e.path, e.version, e.status])).toEqual([
      ['secret.read', 'db/password', 1, 200],
      ['secret.list', 'db/', null, 200],
      ['secret.read', 'db/password', null, 200],
      ['secret.write', 'db/password', null, 200],
      ['secret.write', 'db/password', null, 200],
    ]);
    for (const e of entries) {
      expect(e).toMatchObject({ namespace: NS, outcome: 'success', identity: { id: 'root', method: 'token' } });
      expect(e.request_id).toMatch(/^[0-9a-f-]{36}$/);
    }
    const seqs = entries.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));

    const table = await ok(['audit', 'search', '--namespace', NS, '--action', 'secret.write']);
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SEQ\s+TIME\s+IDENTITY\s+ACTION\s+NAMESPACE\s+PATH\s+STATUS$/);
    expect(lines.slice(1)).toHaveLength(2);
    for (const line of lines.slice(1)) expect(line).toMatch(new RegExp(`^\\d+\\s+\\S+Z\\s+root\\s+secret\\.write\\s+${NS}\\s+db/password\\s+200$`));
  });

  it('search filters by path prefix, action, outcome, identity, time and limit', async () => {
    expect((await search(['--namespace', NS, '--path', 'db/pass'])).map((e) => e.path)).toEqual(Array(4).fill('db/password'));
    expect(await search(['--namespace', NS, '--action', 'secret.list'])).toHaveLength(1);
    expect(await search(['--namespace', NS, '--outcome', 'denied'])).toEqual([]);
    expect(await search(['--namespace', NS, '--identity', 'nobody'])).toEqual([]);
    const all = await search(['--namespace', NS]);
    expect(await search(['--namespace', NS, '--since', '1h'])).toEqual(all);
    expect(await search(['--namespace', NS, '--until', '1h'])).toEqual([]);
    expect(await search(['--namespace', NS, '--since', new Date(Date.now() - 3_600_000).toISOString(), '--until', '2999-01-01'])).toEqual(all);
    expect(await search(['--namespace', NS, '--since', '2999-01-01'])).toEqual([]);
    const newestTwo = await search(['--namespace', NS, '--limit', '2']);
    expect(newestTwo.map((e) => e.action)).toEqual(['secret.read', 'secret.list']);

    // A request without a token is recorded as denied, with no identity.
    expect((await coffer(['-n', NS, 'secret', 'list'], { env: { COFFER_TOKEN: 'not-a-token' } })).code).toBe(3);
    expect(await search(['--namespace', NS, '--outcome', 'denied'])).toMatchObject([{ action: 'secret.list', status: 401, identity: null }]);
  });

  it('filters by namespace only when asked on the command line, not from COFFER_NAMESPACE', async () => {
    const entries = await search(['--limit', '50'], { COFFER_NAMESPACE: NS });
    expect(entries.some((e) => e.namespace !== NS)).toBe(true);
    expect((await search(['-n', NS, '--limit', '50'])).every((e) => e.namespace === NS)).toBe(true);
  });

  it('tail -n prints the last N entries oldest first, one per line (JSON lines with --format json)', async () => {
    const lines = (await ok(['audit', 'tail', '-n', '3', '--namespace', NS])).split('\n').filter(Boolean);
    expect(lines).toHaveLength(3);
    const newest = (await search(['--namespace', NS, '--limit', '3'])).reverse();
    const row = (e: AuditEntry) => [String(e.seq), e.time, e.identity?.id ?? '-', e.action, NS, e.path || '-', String(e.status)];
    expect(lines.map((line) => line.split(/\s+/))).toEqual(newest.map(row));
    expect(lines[2]).toMatch(/^\d+\s+\S+\s+-\s+secret\.list\s/); // the denied request: no identity

    const jsonLines = (await ok(['audit', 'tail', '-n', '3', '--namespace', NS, '--format', 'json'])).trimEnd().split('\n');
    expect(jsonLines.map((l) => (JSON.parse(l) as AuditEntry).seq)).toEqual(newest.map((e) => e.seq));

    // Before `audit`, -n is the namespace; after `tail`, the line count.
    const both = (await ok(['-n', NS, 'audit', 'tail', '-n2', '--format', 'json'])).trimEnd().split('\n');
    expect(both.map((l) => (JSON.parse(l) as AuditEntry).seq)).toEqual(newest.slice(1).map((e) => e.seq));
    expect(await ok(['audit', 'tail', '-n', '0'])).toBe('');
    expect((await ok(['audit', 'tail'])).trimEnd().split('\n')).toHaveLength(20);
  });

  it('tail --follow prints new entries as they come, not its own polls, and exits 0 on SIGINT', async () => {
    const child = spawn(process.execPath, [CLI_MAIN, 'audit', 'tail', '--follow', '--interval', '1', '-n', '1', '--format', 'json'], {
      env: { PATH: process.env.PATH ?? '', ...userEnv() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const entries = () => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
    try {
      await waitFor('the last entry', () => entries().length === 1);
      const value = secretValue('followed');
      await put('followed/secret', value);
      await waitFor('the new entry', () => entries().some((e) => e.path === 'followed/secret'));
      await new Promise((resolve) => setTimeout(resolve, 2500)); // a few more polls
      expect(entries().slice(1).map((e) => [e.action, e.namespace, e.path])).toEqual([['secret.write', NS, 'followed/secret']]);
      expect(stdout).not.toContain(value);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(stderr).toBe('');
  });

  it('hash of a value from stdin equals the HMAC its write recorded', async () => {
    const value = secretValue('hashed');
    await put('hash/me', value);
    const [write] = await search(['--namespace', NS, '--path', 'hash/me', '--action', 'secret.write']);
    expect(write!.hashed['data.password']).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);

    const hash = await ok(['audit', 'hash'], { input: `${value}\n` }); // echo's newline is not part of the value
    expect(hash).toBe(`${write!.hashed['data.password']}\n`);
    expect(await ok(['audit', 'hash', '-'], { input: value })).toBe(hash);
    expect(JSON.parse(await ok(['audit', 'hash', '--format', 'json'], { input: value }))).toEqual({ hash: hash.trimEnd() });
    expect(await ok(['audit', 'hash', secretValue('other')])).not.toBe(hash);

    const empty = await coffer(['audit', 'hash']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('no value to hash');
  });

  it('verify says OK and exits 0 on an intact log', async () => {
    expect(await ok(['audit', 'verify'])).toMatch(/^audit log OK: \d+ entries, \d+ checkpoints?, head seq \d+\n$/);
    const report = JSON.parse(await ok(['audit', 'verify', '--format', 'json'])) as AuditVerifyResult;
    expect(report).toMatchObject({ ok: true, first_broken: null });
    expect(report.entries_checked).toBeGreaterThan(10);
    expect(report.head!.seq).toBe(report.entries_checked);
  });

  it('exits 3 without a token, 2 for bad options', async () => {
    const none = await coffer(['audit', 'search'], { env: { COFFER_TOKEN: undefined } });
    expect(none.code).toBe(3);
    expect(none.stderr).toContain('no token');
    for (const args of [
      ['audit', 'search', '--since', 'yesterday'],
      ['audit', 'search', '--until', '2h30m'],
      ['audit', 'search', '--outcome', 'maybe'],
      ['audit', 'search', '--limit', '0'],
      ['audit', 'tail', '-n', 'all'],
      ['audit', 'tail', '--follow', '--interval', '0'],
      ['audit', 'tail', '--follow', '--interval', '9999999999'],
      ['audit', 'verify', 'extra'],
    ]) {
      const result = await coffer(args);
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
      expect(result.stderr).not.toBe('');
    }
  });

  it('has --help with an example on every audit command', async () => {
    const commands = [['audit'], ...['search', 'tail', 'verify', 'hash'].map((c) => ['audit', c])];
    const results = await Promise.all(commands.map((c) => coffer([...c, '--help'])));
    results.forEach((result, i) => {
      expect({ command: commands[i], code: result.code }).toEqual({ command: commands[i], code: 0 });
      expect(result.stdout).toMatch(/^Usage: coffer audit/);
      expect(result.stdout).toContain('\nExamples:\n  $ ');
    });
    expect(results[3]!.stdout.replace(/\s+/g, ' ')).toContain('exit code 0 when intact, 1 when broken');
  });

  // Last: it reads everything printed above.
  it('never shows a written secret value in any audit output', async () => {
    auditOutputs.push(await ok(['audit', 'search', '--limit', '1000', '--format', 'json']));
    expect(auditOutputs.length).toBeGreaterThan(15);
    expect(written.length).toBeGreaterThanOrEqual(4);
    for (const output of auditOutputs) {
      for (const value of written) expect(output).not.toContain(value);
      expect(output).not.toContain(server.rootToken);
    }
  });
});
