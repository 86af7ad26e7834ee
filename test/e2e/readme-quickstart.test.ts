// The README's CLI quickstart, run as written against a real `coffer-server --dev`: the block
// after the `quickstart-cli` marker goes to sh -e with `coffer` on PATH. Only its two `export`
// lines (the values dev mode prints, different every start) are replaced by this server's.
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CLI_MAIN, startDevServer, type DevServer } from '../helpers/process.js';

const run = promisify(execFile);
const README = fileURLToPath(new URL('../../../README.md', import.meta.url));

/** The first ```sh block after the marker comment. */
export function quickstartBlock(readme: string): string {
  const marker = readme.indexOf('<!-- quickstart-cli');
  if (marker < 0) throw new Error('README.md has no quickstart-cli marker');
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(marker));
  if (!block) throw new Error('no ```sh block after the quickstart-cli marker');
  return block[1]!;
}

let server: DevServer;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'coffer-readme-'));
  server = await startDevServer();
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('README quickstart', () => {
  it('uses the installed coffer command, never npx, in its command blocks', async () => {
    const readme = await readFile(README, 'utf8');
    const commandLines = [...readme.matchAll(/```(?:sh|yaml|dockerfile)\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n'));
    expect(commandLines.filter((line) => /\bnpx coffer\b(?!-server)/.test(line))).toEqual([]);
    // The install line names the tarball `npm run pack` makes for this version.
    const { version } = JSON.parse(await readFile(fileURLToPath(new URL('../../../cli/package.json', import.meta.url)), 'utf8')) as { version: string };
    expect(readme).toContain(`npm run pack && npm install -g ./packages/coffer-cli-${version}.tgz`);
  });

  it('the CLI quickstart block stores and reads a secret against a dev server', async () => {
    const block = quickstartBlock(await readFile(README, 'utf8'));
    const exports = block.split('\n').filter((line) => line.startsWith('export '));
    expect(exports.map((line) => line.split('=')[0])).toEqual(['export COFFER_ADDR', 'export COFFER_TOKEN']);
    const script = block
      .replace(/^export COFFER_ADDR=.*$/m, `export COFFER_ADDR=${server.address}`)
      .replace(/^export COFFER_TOKEN=.*$/m, `export COFFER_TOKEN=${server.rootToken}`);

    // `coffer` on PATH, as `npm install -g` leaves it.
    const bin = path.join(dir, 'bin');
    await run('mkdir', ['-p', bin]);
    await writeFile(path.join(bin, 'coffer'), `#!/bin/sh\nexec "${process.execPath}" "${CLI_MAIN}" "$@"\n`);
    await chmod(path.join(bin, 'coffer'), 0o755);

    const env: Record<string, string> = { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: dir };
    const result = await run('sh', ['-e', '-c', script], { env, cwd: dir, timeout: 120_000 }).catch((err: { code: number; stdout: string; stderr: string }) => {
      throw new Error(`the quickstart failed (exit ${err.code}):\n${err.stdout}\n${err.stderr}`);
    });
    expect(result.stdout).toMatch(/^password\s+s3cr3t$/m); // secret get
    expect(result.stdout).toMatch(/^password$/m); // secret list db/
    expect(result.stdout).toMatch(/^DB_PASSWORD has 6 characters$/m); // coffer run
  }, 180_000);
});
