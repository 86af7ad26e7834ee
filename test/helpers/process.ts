// Real processes for end-to-end tests: `coffer-server` (server/dist/main.js) and the built `coffer` CLI.
// Both run from the compiled output (`npm test` runs `tsc -b` first).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnCaptured, stopProcess, waitForHttp } from '#lib/child.mjs';
import { freePort } from '#lib/port.mjs';

export { freePort };

/**
 * How long a server process may take to start, and a CLI run to finish. Sized for a
 * loaded 2-core CI runner (load average 20 seen while six suites ran side by side: a
 * dev server took over 30 s to print its token), not for an idle laptop; they only
 * bound how long a real failure takes to report.
 */
export const START_TIMEOUT_MS = 150_000;
export const CLI_TIMEOUT_MS = 120_000;

export const SERVER_MAIN = fileURLToPath(new URL('../../../server/dist/main.js', import.meta.url));
export const CLI_MAIN = fileURLToPath(new URL('../../../cli/dist/main.js', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function runServerCommand(args: string[], env: Record<string, string>): { child: ChildProcess; output(): string; exited: Promise<number | string> } {
  const run = spawnCaptured(process.execPath, [SERVER_MAIN, ...args], { env: { PATH: process.env.PATH ?? '', COFFER_LOG_LEVEL: 'info', ...env } });
  const exited = run.exited.then(({ code, signal }) => code ?? signal ?? -1);
  return { child: run.child, output: run.output, exited };
}

/**
 * Starts `coffer-server` and waits until it answers HTTP (or exits). Only an answer from a port
 * this process listens on counts: freePort's port can be taken by another server on a busy machine
 * (a bench, another suite's server) between the choice and the bind, and an initialised impostor
 * answering health checks once made an `operator init` fail with "already initialised". A start
 * that lost its port that way is retried on another one, unless the caller chose the port.
 */
export async function startServerProcess(
  env: Record<string, string>,
  args: string[] = [],
  /** How the port is chosen (tests of this function lose the race on purpose). */
  { choosePort = freePort }: { choosePort?: () => Promise<number> } = {},
): Promise<ServerProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = env.COFFER_PORT !== undefined ? Number(env.COFFER_PORT) : await choosePort();
    const url = `http://127.0.0.1:${port}`;
    const run = runServerCommand(args, { COFFER_HOST: '127.0.0.1', COFFER_PORT: String(port), ...env });
    let exitedEarly = false;
    void run.exited.then(() => (exitedEarly = true));
    const pid = run.child.pid!;
    // A server that accepted the connection may answer as slowly as it must (a busy machine).
    const ready = await waitForHttp(`${url}/v1/sys/health`, {
      timeoutMs: START_TIMEOUT_MS,
      intervalMs: 50,
      requestTimeoutMs: 0,
      stopIf: () => exitedEarly,
      owner: pid,
    });
    if ('ended' in ready) {
      if (env.COFFER_PORT === undefined && attempt < 5 && /EADDRINUSE/.test(run.output())) continue;
      throw new Error(`coffer-server exited during start-up:\n${run.output()}`);
    }
    if ('timedOut' in ready) {
      run.child.kill('SIGKILL');
      throw new Error(`coffer-server did not start in time:\n${run.output()}`);
    }
    return {
      ...run,
      url,
      async stop(signal: NodeJS.Signals = 'SIGTERM') {
        if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill(signal);
        return run.exited;
      },
    };
  }
}

/** The parent's environment without COFFER_* settings, which would change what the child does. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('COFFER_')) env[key] = value;
  }
  return env;
}

export interface DevServer {
  address: string;
  rootToken: string;
  unsealShare: string;
  stop(): Promise<void>;
}

/**
 * Starts `coffer-server --dev` on an ephemeral port (port 0: no race for a free
 * port) and reads its address, root token and unseal share from stdout.
 * `env` adds settings (e.g. COFFER_TLS_* for a dev server serving HTTPS).
 */
export function startDevServer(env: Record<string, string> = {}): Promise<DevServer> {
  const child = spawn(process.execPath, [SERVER_MAIN, '--dev', '--host', '127.0.0.1', '--port', '0'], {
    env: { ...cleanEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const stop = async () => {
    await stopProcess(child, exited, { graceMs: 10_000 });
  };

  return new Promise<DevServer>((resolve, reject) => {
    const fail = (why: string) => {
      void stop();
      reject(new Error(`${why}\n--- server stdout ---\n${stdout}\n--- server stderr ---\n${stderr}`));
    };
    // The token is printed once the server listens, is initialised and unsealed: the real condition.
    const timer = setTimeout(() => fail(`dev server did not print its token within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const address = /export COFFER_ADDR=(\S+)/.exec(stdout)?.[1];
      const rootToken = /export COFFER_TOKEN=(\S+)/.exec(stdout)?.[1];
      const unsealShare = /Unseal share[^:]*: (\S+)/.exec(stdout)?.[1];
      if (address && rootToken && unsealShare) {
        clearTimeout(timer);
        resolve({ address, rootToken, unsealShare, stop });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(`dev server exited early (code ${code}, signal ${signal})`);
    });
  });
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `coffer` with exactly `env` (plus PATH), feeding `input` on stdin. */
export function runCli(
  args: string[],
  options: { env: Record<string, string | undefined>; input?: string; /** Sees stderr so far, as it comes (to wait for what the CLI says). */ onStderr?: (stderr: string) => void },
): Promise<CliResult> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const [key, value] of Object.entries(options.env)) if (value !== undefined) env[key] = value;
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    options.onStderr?.(stderr);
  });
  child.stdin.on('error', () => {}); // the CLI may exit without reading stdin
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), CLI_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ProcessScope {
  /** Every server started through `start` (stopped with SIGKILL after the file's tests). */
  running: ServerProcess[];
  /** A temporary directory removed after the file's tests. */
  tempDir(prefix: string): string;
  /** startServerProcess, remembered in `running`. */
  start(env: Record<string, string>, args?: string[]): Promise<ServerProcess>;
  /** Runs `cleanup` after the file's tests, with the directories' removal. */
  defer(cleanup: () => void): void;
}

/**
 * Server processes and temporary directories that belong to one test file: registers an afterAll
 * that kills the processes and removes the directories. Call it at the top level of the file.
 */
export function processScope(): ProcessScope {
  const running: ServerProcess[] = [];
  const cleanups: Array<() => void> = [];
  afterAll(async () => {
    await Promise.all(running.map((p) => p.stop('SIGKILL')));
    for (const c of cleanups) c();
  });
  return {
    running,
    tempDir(prefix: string): string {
      const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    },
    async start(env: Record<string, string>, args: string[] = []): Promise<ServerProcess> {
      const p = await startServerProcess(env, args);
      running.push(p);
      return p;
    },
    defer(cleanup: () => void): void {
      cleanups.push(cleanup);
    },
  };
}
