// The image's runtime stage, laid out without Docker: its `COPY --from=build` lines and `ln -s`
// links replayed into a temp directory (the repository's build output standing in for the build
// stage's), then the entrypoint and the CLI started through those links. A file the runtime stage
// forgets to copy (a package.json with "type": "module", a launcher, a dist/) fails here.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { spawnCaptured, stopProcess, waitForHttp } from '#lib/child.mjs';
import { freePort } from '#lib/port.mjs';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface RuntimeStage {
  workdir: string;
  copies: Array<{ source: string; dest: string }>;
  links: Array<{ target: string; link: string }>;
  entrypoint: string[];
  env: Record<string, string>;
}

function runtimeStage(): RuntimeStage {
  const text = readFileSync(path.join(ROOT, 'deploy/Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const last = lines.map((l, i) => (/^FROM\s/i.test(l) ? i : -1)).filter((i) => i >= 0).pop()!;
  const stage: RuntimeStage = { workdir: '/', copies: [], links: [], entrypoint: [], env: {} };
  for (const line of lines.slice(last + 1)) {
    const [word, ...rest] = line.split(/\s+/);
    if (word === 'WORKDIR') stage.workdir = rest[0]!;
    if (word === 'COPY') {
      expect(rest[0]).toBe('--from=build');
      const dest = rest[2]!;
      stage.copies.push({ source: rest[1]!, dest: path.isAbsolute(dest) ? dest : path.join(stage.workdir, dest) });
    }
    if (word === 'RUN') for (const m of line.matchAll(/ln -s (\S+) (\S+)/g)) stage.links.push({ target: m[1]!, link: m[2]! });
    if (word === 'ENTRYPOINT') stage.entrypoint = JSON.parse(rest.join(' ')) as string[];
    if (word === 'ENV') for (const m of rest.join(' ').matchAll(/(\w+)=(\S+)/g)) stage.env[m[1]!] = m[2]!;
  }
  return stage;
}

describe('deploy/Dockerfile runtime stage, replayed without Docker', () => {
  let image: string;
  const stage = runtimeStage();
  const at = (p: string) => path.join(image, p);
  const PATH = () => `${at('/usr/local/bin')}:${path.dirname(process.execPath)}:/usr/bin:/bin`;

  beforeAll(() => {
    image = mkdtempSync(path.join(tmpdir(), 'coffer-image-'));
    for (const { source, dest } of stage.copies) {
      // The build stage works in /src; its outputs are the repository's (npm ci, tsc -b).
      const from = path.join(ROOT, path.relative('/src', source));
      const to = at(dest.endsWith('/') ? path.join(dest, path.basename(source)) : dest);
      mkdirSync(path.dirname(to), { recursive: true });
      if (source === '/src/node_modules') {
        // Too big to copy: link each package, except the workspace links, which must resolve inside the image.
        mkdirSync(to, { recursive: true });
        for (const entry of readdirSync(from)) {
          if (entry === '@coffer') {
            mkdirSync(path.join(to, '@coffer'));
            for (const pkg of readdirSync(path.join(from, '@coffer'))) symlinkSync(`../../${pkg}`, path.join(to, '@coffer', pkg));
          } else symlinkSync(path.join(from, entry), path.join(to, entry));
        }
      } else if (path.basename(source) === 'node_modules' && !existsSync(from)) {
        // The build stage makes each workspace's node_modules (empty when all is hoisted).
        mkdirSync(to, { recursive: true });
      } else cpSync(from, to, { recursive: true, verbatimSymlinks: true });
    }
    for (const { target, link } of stage.links) {
      mkdirSync(path.dirname(at(link)), { recursive: true });
      symlinkSync(at(target), at(link));
    }
  });

  afterAll(() => rmSync(image, { recursive: true, force: true }));

  it('has the CLI on PATH through its link', () => {
    const run = spawnSync('coffer', ['--help'], { encoding: 'utf8', env: { PATH: PATH() }, timeout: 60_000 });
    expect({ status: run.status, error: run.error?.message }).toEqual({ status: 0, error: undefined });
    expect(run.stdout).toMatch(/usage:\s+coffer/i);
  });

  it('serves through the ENTRYPOINT link with the image ENV, and migrates with `migrate`', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'coffer-image-data-'));
    try {
      const env = { ...stage.env, PATH: PATH(), COFFER_DATA_DIR: dataDir, COFFER_LOG_LEVEL: 'warn' };
      const migrate = spawnSync(stage.entrypoint[0]!, [...stage.entrypoint.slice(1), 'migrate'], { encoding: 'utf8', env, timeout: 60_000 });
      expect({ status: migrate.status, error: migrate.error?.message, out: migrate.status === 0 ? '' : migrate.stdout + migrate.stderr }).toEqual({ status: 0, error: undefined, out: '' });

      // The image listens on 0.0.0.0 (TLS or COFFER_ALLOW_INSECURE_HTTP required); here only loopback.
      const port = await freePort();
      const server = spawnCaptured(stage.entrypoint[0]!, stage.entrypoint.slice(1), { env: { ...env, COFFER_HOST: '127.0.0.1', COFFER_PORT: String(port) } });
      try {
        const up = await waitForHttp(`http://127.0.0.1:${port}/v1/sys/health?sealedcode=200&uninitcode=200`, { timeoutMs: 60_000, requestTimeoutMs: 0 });
        expect({ up, output: 'status' in up ? '' : server.output() }).toEqual({ up: { status: 200 }, output: '' });
      } finally {
        await stopProcess(server.child, server.exited, { graceMs: 15_000 });
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
