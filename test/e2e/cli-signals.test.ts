// End to end: `coffer run` signal handling where it is delicate — on a real terminal (a pty made by
// script(1), where Ctrl-C reaches the whole foreground process group) and as PID 1 of a fresh PID
// namespace (unshare(1), as in a container), where signals without a handler are dropped by the kernel.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CLI_MAIN, runCli, startDevServer, type DevServer } from '../helpers/process.js';

const NS = 'e2esignals';
const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const HAVE_SCRIPT = has('script', ['-qec', 'true', '/dev/null']);
/** unshare flags that give a new PID namespace here: as root, else inside a user namespace (containers without CAP_SYS_ADMIN). */
const PIDNS_FLAGS = process.platform !== 'linux' ? undefined : [['-pf', '--mount-proc', '--kill-child'], ['-Urpf', '--mount-proc', '--kill-child']].find((flags) => has('unshare', [...flags, 'true']));
const HAVE_PIDNS = PIDNS_FLAGS !== undefined;

let server: DevServer;
let home: string;

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-signals-'));
  server = await startDevServer();
  const env = { HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken };
  await runCli(['ns', 'create', NS], { env });
  await runCli(['-n', NS, 'secret', 'put', 'app/token', 'v=signal-test'], { env });
});

/** Kills what a failed test left running (jest would otherwise wait for it). */
let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
});

afterAll(async () => {
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

/** A child that counts SIGINTs: prints READY, then COUNT=n 800 ms after the first one and exits 0. */
const COUNTER = `let n=0;process.on('SIGINT',()=>{if(n++===0)setTimeout(()=>{console.log('COUNT='+n);process.exit(0)},800)});console.log('READY',process.env.TOKEN);setInterval(()=>{},1000)`;

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function collect(child: ChildProcess): { text: () => string; exited: Promise<number | null> } {
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return { text: () => out, exited: new Promise((resolve) => child.on('close', (code) => resolve(code))) };
}

async function waitFor(text: () => string, needle: string, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!text().includes(needle)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${needle}; output so far:\n${text()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const env = () => ({ PATH: process.env.PATH ?? '', HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken });

describe('a signal the moment the command starts', () => {
  it('is forwarded, not met by the default action (which would kill coffer and orphan the command)', async () => {
    // The command's first act is to signal coffer; coffer must already be handling TERM.
    const script = 'trap "echo got-term; exit 4" TERM; kill -TERM $PPID; sleep 5 & wait';
    for (let i = 0; i < 5; i++) {
      const child = spawn(process.execPath, [CLI_MAIN, '-n', NS, 'run', '--', 'sh', '-c', script], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
      cleanup = () => child.kill('SIGKILL');
      const out = collect(child);
      expect(await out.exited).toBe(4);
      expect(out.text()).toContain('got-term');
    }
  });
});

(HAVE_SCRIPT ? describe : describe.skip)('on a terminal', () => {
  /** Runs coffer under a pty and presses Ctrl-C once the command is ready; returns how many SIGINTs the command saw. */
  async function ctrlC(extra: string[]): Promise<{ count: number; code: number | null; forwarded: boolean }> {
    // exec: no shell in between (dash, as /bin/sh, would itself die of the SIGINT after the command exits).
    const cmd = 'exec ' + [process.execPath, CLI_MAIN, '-n', NS, 'run', '--prefix', 'app/', ...extra, '--', process.execPath, '-e', COUNTER].map(quote).join(' ');
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { env: { ...env(), COFFER_DEBUG: 'signals' }, stdio: ['pipe', 'pipe', 'pipe'] });
    cleanup = () => child.kill('SIGKILL');
    const out = collect(child);
    await waitFor(out.text, 'READY signal-test');
    child.stdin!.write('\x03'); // the terminal's INTR character: the line discipline signals the foreground group
    await waitFor(out.text, 'COUNT=');
    const code = await out.exited;
    return { count: Number(/COUNT=(\d+)/.exec(out.text())![1]), code, forwarded: out.text().includes('coffer: forwarding SIGINT') };
  }

  // Two SIGINTs sent microseconds apart may merge into one pending signal, so the command's count
  // alone cannot show a second copy: coffer's COFFER_DEBUG=signals line says whether it sent one.
  it('Ctrl-C reaches the command once (coffer does not forward the terminal\'s SIGINT again)', async () => {
    const { count, code, forwarded } = await ctrlC([]);
    expect(forwarded).toBe(false);
    expect(count).toBe(1);
    expect(code).toBe(0);
  });

  it('--forward-signals forwards it anyway', async () => {
    const { count, forwarded } = await ctrlC(['--forward-signals']);
    expect(forwarded).toBe(true);
    expect(count).toBeGreaterThanOrEqual(1);
  });
});

(HAVE_SCRIPT ? describe : describe.skip)('on a terminal: the password prompt', () => {
  it('coffer login userpass prompts without echoing the password and stores the token', async () => {
    const password = `tty-${Date.now().toString(36)}-secret`;
    const put = await runCli(['user', 'put', 'bob'], { input: password, env: env() });
    expect(put.code).toBe(0);
    const h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-tty-'));
    try {
      const cmd = 'exec ' + [process.execPath, CLI_MAIN, 'login', 'userpass', '-u', 'bob'].map(quote).join(' ');
      const child = spawn('script', ['-qfec', cmd, '/dev/null'], { env: { ...env(), HOME: h, COFFER_TOKEN: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
      cleanup = () => child.kill('SIGKILL');
      const out = collect(child);
      await waitFor(out.text, 'Password: ');
      child.stdin!.write(`${password}\r`);
      expect(await out.exited).toBe(0);
      expect(out.text()).toContain('user:bob');
      expect(out.text()).not.toContain(password); // the terminal did not echo it
      expect(readFileSync(path.join(h, '.config', 'coffer', 'token'), 'utf8')).toMatch(/^ey/);
    } finally {
      await rm(h, { recursive: true, force: true });
    }
  });
});

(HAVE_PIDNS ? describe : describe.skip)('as PID 1 (container ENTRYPOINT)', () => {
  it('SIGTERM sent to coffer as PID 1 reaches the command, and coffer exits with its code', async () => {
    // The handler first, then READY: the test signals as soon as it reads READY, and a TERM before
    // the handler met Node's default action (exit 143; seen on a busy machine, issue 12).
    const script = `process.on('SIGTERM', () => { console.log('TERM'); process.exit(7); }); console.log('READY', process.ppid, process.env.TOKEN); setInterval(() => {}, 1000)`;
    const child = spawn('unshare', [...PIDNS_FLAGS!, process.execPath, CLI_MAIN, '-n', NS, 'run', '--prefix', 'app/', '--', process.execPath, '-e', script], {
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = collect(child);
    cleanup = () => child.kill('SIGKILL');
    await waitFor(out.text, 'READY');
    expect(out.text()).toContain('READY 1 signal-test'); // the command's parent, coffer, is PID 1
    // coffer's host PID: the only child of unshare.
    const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/);
    expect(children).toHaveLength(1);
    process.kill(Number(children[0]), 'SIGTERM');
    expect(await out.exited).toBe(7);
    expect(out.text()).toContain('TERM');
  });
});
