import type { ChildProcess, StdioNull, StdioPipe } from 'node:child_process';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned. */
  error?: Error;
}

export interface Captured {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved as received (the last `maxOutput` characters). */
  output(): string;
  /** Resolves once the process has ended, also when it could not be spawned. */
  exited: Promise<Exit>;
}

export function spawnCaptured(
  command: string,
  args: readonly string[],
  options?: { env?: NodeJS.ProcessEnv; cwd?: string; maxOutput?: number; stdin?: StdioNull | StdioPipe },
): Captured;

export function hasExited(child: ChildProcess): boolean;

/** `signal` (default SIGTERM), then SIGKILL after `graceMs` (default 10 s); resolves with `exited`'s value. */
export function stopProcess<T>(
  child: ChildProcess,
  exited: Promise<T>,
  options?: { signal?: NodeJS.Signals; graceMs?: number; onKill?: () => void },
): Promise<T>;

export type HttpWait = { status: number } | { ended: true } | { timedOut: true };

/**
 * Polls `url` until a server answers (any status), `stopIf()` is true, or `timeoutMs` passes.
 * `requestTimeoutMs` (default 2000) cuts each attempt; 0 lets an accepted request take as long as it takes.
 */
export function waitForHttp(
  url: string,
  options?: { timeoutMs?: number; intervalMs?: number; requestTimeoutMs?: number; stopIf?: () => boolean; owner?: number },
): Promise<HttpWait>;
