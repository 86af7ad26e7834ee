#!/usr/bin/env node
// `npm run pack`: the installable artefacts of the CLI and the SDK, as npm tarballs.
//
//   packages/coffer-sdk-<v>.tgz   @coffer/sdk: no dependencies
//   packages/coffer-cli-<v>.tgz   @coffer/cli: the `coffer` command, with @coffer/sdk BUNDLED inside,
//                                 so one file installs it:  npm install -g ./coffer-cli-<v>.tgz
//                                 (its other dependencies, commander and yaml, come from the npm registry)
//
// Neither pulls in a native addon, so installing them needs no compiler (only the server has
// native addons). Both are ready for `npm publish <tarball>` (sdk first).
//
// Why the CLI is packed from a staging folder: npm packs a bundled dependency only from the
// package's own node_modules, and in this workspace @coffer/sdk is a symlink in the root's.
// The staging folder holds the CLI's files plus the SDK as its tarball unpacks, and its
// package.json gets `bundleDependencies` (kept out of cli/package.json, where it would change
// how `npm ci` treats the workspace link).
//
// Options: --out DIR (default ./packages), --no-build (use the existing dist/ folders).

import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const out = path.resolve(outIndex >= 0 ? args[outIndex + 1] ?? '' : path.join(root, 'packages'));
const build = !args.includes('--no-build');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const log = (s) => process.stderr.write(`[pack] ${s}\n`);

if (build) {
  log('building (tsc -b)');
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-b'], { cwd: root, stdio: 'inherit' });
}
for (const ws of ['sdk', 'cli']) {
  if (!existsSync(path.join(root, ws, 'dist/index.js')) && !existsSync(path.join(root, ws, 'dist/main.js'))) {
    throw new Error(`${ws}/dist is missing: build first (npm run build) or drop --no-build`);
  }
}
mkdirSync(out, { recursive: true });

/** `npm pack DIR` into `out`; returns the tarball's path. */
function pack(dir) {
  const json = execFileSync(npm, ['pack', dir, '--pack-destination', out, '--json', '--ignore-scripts'], {
    cwd: os.tmpdir(), // outside the workspace: pack the folder as a package of its own
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [result] = JSON.parse(json);
  return { file: path.join(out, result.filename), files: result.files.map((f) => f.path), size: result.size };
}

const stage = mkdtempSync(path.join(os.tmpdir(), 'coffer-pack-'));
try {
  const sdk = pack(path.join(root, 'sdk'));
  log(`${path.relative(root, sdk.file)}  (${sdk.files.length} files, ${(sdk.size / 1024).toFixed(0)} KiB)`);

  const cliDir = path.join(root, 'cli');
  const manifest = JSON.parse(readFileSync(path.join(cliDir, 'package.json'), 'utf8'));
  const sdkManifest = JSON.parse(readFileSync(path.join(root, 'sdk/package.json'), 'utf8'));
  if (manifest.dependencies['@coffer/sdk'] !== sdkManifest.version) {
    throw new Error(`cli depends on @coffer/sdk ${manifest.dependencies['@coffer/sdk']}, but sdk is ${sdkManifest.version}`);
  }
  const staged = path.join(stage, 'cli');
  mkdirSync(staged);
  for (const entry of ['bin', 'dist', 'README.md']) cpSync(path.join(cliDir, entry), path.join(staged, entry), { recursive: true });
  writeFileSync(path.join(staged, 'package.json'), `${JSON.stringify({ ...manifest, bundleDependencies: ['@coffer/sdk'] }, null, 2)}\n`);
  const sdkTarget = path.join(staged, 'node_modules/@coffer/sdk');
  mkdirSync(sdkTarget, { recursive: true });
  execFileSync('tar', ['-xzf', sdk.file, '-C', sdkTarget, '--strip-components=1']);
  const cli = pack(staged);
  if (!cli.files.some((f) => f.startsWith('node_modules/@coffer/sdk/dist/'))) throw new Error('the CLI tarball lacks the bundled SDK');
  log(`${path.relative(root, cli.file)}  (${cli.files.length} files, ${(cli.size / 1024).toFixed(0)} KiB, @coffer/sdk bundled)`);
  // stdout: the tarballs, one per line, for scripts.
  process.stdout.write(`${sdk.file}\n${cli.file}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
