// Runs the real `coffer-server` process (server/dist/main.js) for end-to-end tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const SERVER_MAIN = fileURLToPath(new URL('../../../server/dist/main.js', import.meta.url));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function runServerCommand(args: string[], env: Record<string, string>): { child: ChildProcess; output(): string; exited: Promise<number | string> } {
  const child = spawn(process.execPath, [SERVER_MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', COFFER_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, output: () => out, exited };
}

/** Starts `coffer-server` and waits until it answers HTTP (or exits). */
export async function startServerProcess(env: Record<string, string>, args: string[] = []): Promise<ServerProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const run = runServerCommand(args, { COFFER_HOST: '127.0.0.1', COFFER_PORT: String(port), ...env });
  let exitedEarly = false;
  void run.exited.then(() => (exitedEarly = true));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exitedEarly) throw new Error(`coffer-server exited during start-up:\n${run.output()}`);
    try {
      await fetch(`${url}/v1/sys/health`);
      break;
    } catch {
      if (Date.now() > deadline) {
        run.child.kill('SIGKILL');
        throw new Error(`coffer-server did not start in time:\n${run.output()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
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
