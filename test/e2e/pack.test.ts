// The CLI and SDK as a user installs them without cloning: `scripts/pack.mjs` builds the npm
// tarballs, npm installs them into throwaway prefixes, and the installed `coffer` and
// `@coffer/sdk` work. The install must need no compiler: no native addon, no install script.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startDevServer, type DevServer } from '../helpers/process.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];

let dir: string;
let sdkTarball: string;
let cliTarball: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'coffer-pack-'));
  const { stdout } = await run(process.execPath, [path.join(ROOT, 'scripts/pack.mjs'), '--no-build', '--out', path.join(dir, 'out')], { cwd: ROOT });
  [sdkTarball, cliTarball] = stdout.trim().split('\n') as [string, string];
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every package.json under `tree`'s node_modules, with its path. */
async function installedPackages(tree: string): Promise<Array<{ file: string; manifest: { name: string; scripts?: Record<string, string>; gypfile?: boolean } }>> {
  const found = [];
  for (const entry of await readdir(tree, { recursive: true, withFileTypes: true })) {
    if (entry.name !== 'package.json') continue;
    const file = path.join(entry.parentPath, entry.name);
    if (!path.relative(tree, file).includes('node_modules')) continue;
    found.push({ file, manifest: JSON.parse(await readFile(file, 'utf8')) });
  }
  return found;
}

async function expectNoCompilerNeeded(tree: string): Promise<void> {
  const packages = await installedPackages(tree);
  expect(packages.length).toBeGreaterThan(0);
  for (const { file, manifest } of packages) {
    const scripts = Object.keys(manifest.scripts ?? {}).filter((s) => ['preinstall', 'install', 'postinstall'].includes(s));
    expect({ file, scripts, gypfile: manifest.gypfile ?? false }).toEqual({ file, scripts: [], gypfile: false });
    expect(existsSync(path.join(path.dirname(file), 'binding.gyp'))).toBe(false);
  }
  const native = (await readdir(tree, { recursive: true })).filter((f) => f.endsWith('.node'));
  expect(native).toEqual([]);
}

describe('npm pack artefacts', () => {
  it('are named after the packages and ship no source maps or build info', async () => {
    expect(path.basename(sdkTarball)).toBe('coffer-sdk-0.1.0.tgz');
    expect(path.basename(cliTarball)).toBe('coffer-cli-0.1.0.tgz');
    for (const tarball of [sdkTarball, cliTarball]) {
      const { stdout } = await run('tar', ['-tzf', tarball]);
      const files = stdout.trim().split('\n');
      expect(files).toContain('package/README.md');
      expect(files.filter((f) => f.endsWith('.map') || f.includes('tsbuildinfo') || f.includes('/src/'))).toEqual([]);
    }
  });

  it('the CLI installs globally from its one tarball (SDK bundled, no compiler) and talks to a server', async () => {
    const prefix = path.join(dir, 'global');
    await run('npm', ['install', '-g', '--prefix', prefix, ...NPM_FLAGS, cliTarball], { cwd: dir, timeout: 120_000 });
    const coffer = path.join(prefix, 'bin', 'coffer');
    const help = await run(coffer, ['--help']);
    expect(help.stdout).toMatch(/^Usage: coffer /m);
    expect(existsSync(path.join(prefix, 'lib/node_modules/@coffer/cli/node_modules/@coffer/sdk/dist/index.js'))).toBe(true);
    await expectNoCompilerNeeded(path.join(prefix, 'lib'));

    let server: DevServer | undefined;
    try {
      server = await startDevServer();
      const env = { PATH: process.env.PATH ?? '', HOME: dir, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken };
      await run(coffer, ['ns', 'create', 'packed'], { env });
      await run(coffer, ['-n', 'packed', 'secret', 'put', 'db/pw', 'password=hunter2-packed'], { env });
      const got = await run(coffer, ['-n', 'packed', 'secret', 'get', 'db/pw', '--field', 'password'], { env });
      expect(got.stdout).toBe('hunter2-packed');
    } finally {
      await server?.stop();
    }
  }, 180_000);

  it('the SDK installs into a project and imports, with its wire contract entry point', async () => {
    const app = path.join(dir, 'app');
    await mkdir(app);
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    await run('npm', ['install', ...NPM_FLAGS, sdkTarball], { cwd: app, timeout: 120_000 });
    await expectNoCompilerNeeded(app);
    const script = [
      "import { CofferClient, SDK_VERSION } from '@coffer/sdk';",
      "import { ERROR_CODES } from '@coffer/sdk/api';",
      "const c = new CofferClient({ address: 'http://127.0.0.1:1' });",
      'console.log(JSON.stringify({ v: SDK_VERSION, client: typeof c.secrets.get, codes: ERROR_CODES.length > 0 }));',
    ].join('\n');
    await writeFile(path.join(app, 'check.mjs'), script);
    const { stdout } = await run(process.execPath, ['check.mjs'], { cwd: app });
    expect(JSON.parse(stdout)).toEqual({ v: '0.1.0', client: 'function', codes: true });
    expect(JSON.parse(await readFile(path.join(app, 'package.json'), 'utf8')).dependencies['@coffer/sdk']).toMatch(/coffer-sdk-0\.1\.0\.tgz$/);
  }, 180_000);
});
