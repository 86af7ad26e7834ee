// Child processes for the tests, the bench and the scripts: spawn with the output kept,
// a promise of the exit, a stop that escalates to SIGKILL, and a wait for an HTTP server.
// Dependency-free (node: built-ins only).
import { spawn } from 'node:child_process';
import { listensOn } from './port.mjs';

/**
 * Spawns `command args…` with stdout and stderr captured (interleaved, as received).
 * `maxOutput` keeps only the last that many characters (default: everything).
 * `exited` resolves once the process has ended, also when it could not be spawned.
 */
export function spawnCaptured(command, args, { env, cwd, maxOutput = Infinity, stdin = 'ignore' } = {}) {
  const child = spawn(command, args, { env, cwd, stdio: [stdin, 'pipe', 'pipe'] });
  let output = '';
  const keep = (d) => {
    output += d;
    if (output.length > maxOutput) output = output.slice(-maxOutput);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => {
      keep(`spawn error: ${err.message}\n`);
      resolve({ code: null, signal: null, error: err });
    });
  });
  return { child, output: () => output, exited };
}

export const hasExited = (child) => child.exitCode !== null || child.signalCode !== null;

/**
 * Sends `signal` (SIGTERM: servers shut down cleanly) and SIGKILL after `graceMs` if the
 * process is still there. Resolves with `exited`'s value.
 */
export async function stopProcess(child, exited, { signal = 'SIGTERM', graceMs = 10_000, onKill } = {}) {
  if (hasExited(child)) return exited;
  child.kill(signal);
  const timer = setTimeout(() => {
    if (!hasExited(child)) {
      onKill?.();
      child.kill('SIGKILL');
    }
  }, graceMs);
  const result = await exited;
  clearTimeout(timer);
  return result;
}

/**
 * Polls `url` until a server answers at all (any HTTP status): `{ status }`. Gives up with
 * `{ ended: true }` as soon as `stopIf()` is true (the server process is gone), or with
 * `{ timedOut: true }` after `timeoutMs`. Each attempt is cut after `requestTimeoutMs` (0: it
 * waits as long as the server takes once it accepts the connection). With `owner` (a pid), an
 * answer counts only while that process listens on the URL's port (port.mjs listensOn): another
 * process may have bound it first. The caller words the error.
 */
export async function waitForHttp(url, { timeoutMs = 60_000, intervalMs = 100, requestTimeoutMs = 2000, stopIf = () => false, owner } = {}) {
  const deadline = Date.now() + timeoutMs;
  const port = Number(new URL(url).port);
  for (;;) {
    if (stopIf()) return { ended: true };
    try {
      const res = await fetch(url, requestTimeoutMs > 0 ? { signal: AbortSignal.timeout(requestTimeoutMs) } : {});
      await res.arrayBuffer();
      // An answer from a process other than the awaited one is not its readiness.
      if (owner === undefined || listensOn(owner, port) !== false) return { status: res.status };
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) return { timedOut: true };
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
