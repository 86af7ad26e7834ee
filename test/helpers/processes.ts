// Real processes for end-to-end tests: the built server in dev mode and the built CLI.
// Both run from the compiled output (`npm test` runs `tsc -b` first).

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** test/dist/helpers/ → the repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const serverMain = path.join(repoRoot, 'server', 'dist', 'main.js');
const cliMain = path.join(repoRoot, 'cli', 'dist', 'main.js');

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
 */
export function startDevServer(): Promise<DevServer> {
  const child = spawn(process.execPath, [serverMain, '--dev', '--host', '127.0.0.1', '--port', '0'], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    }
  };

  return new Promise<DevServer>((resolve, reject) => {
    const fail = (why: string) => {
      void stop();
      reject(new Error(`${why}\n--- server stdout ---\n${stdout}\n--- server stderr ---\n${stderr}`));
    };
    const timer = setTimeout(() => fail('dev server did not print its token within 30 s'), 30_000);
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
export function runCli(args: string[], options: { env: Record<string, string | undefined>; input?: string }): Promise<CliResult> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const [key, value] of Object.entries(options.env)) if (value !== undefined) env[key] = value;
  const child = spawn(process.execPath, [cliMain, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.on('error', () => {}); // the CLI may exit without reading stdin
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}
