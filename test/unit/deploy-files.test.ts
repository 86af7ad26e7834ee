// The deployment files that cannot run here (no container engine, no systemd as PID 1), checked
// for what can be: the executable launchers every install path links to, the Dockerfile's sources
// against the build context that .dockerignore leaves, the compose file's services, HAProxy's
// configuration (haproxy -c) and the systemd unit (systemd-analyze verify / security).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (p: string) => readFileSync(path.join(ROOT, p), 'utf8');
/** haproxy lives in /usr/sbin, which a non-root PATH may lack. */
const TOOL_ENV = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin:/usr/bin` };

type Obj = Record<string, any>;

const LAUNCHERS = { 'coffer-server': 'server/bin/coffer-server.js', coffer: 'cli/bin/coffer.js' } as const;

/** `.dockerignore` patterns as Docker reads them (Go filepath.Match plus `**`), without `!` exceptions. */
function dockerIgnored(patterns: string[], file: string): boolean {
  const toRe = (p: string) =>
    new RegExp(
      '^' +
        p
          .replace(/^\/+|\/+$/g, '')
          .split('/')
          .map((seg) => (seg === '**' ? '.*' : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
          .join('/')
          .replace(/\.\*\//g, '(?:.*/)?') +
        '$',
    );
  const res = patterns.map(toRe);
  const parts = file.split('/');
  // A file is excluded when it or any directory above it matches.
  return parts.some((_, i) => res.some((re) => re.test(parts.slice(0, i + 1).join('/'))));
}

function dockerignorePatterns(): string[] {
  const lines = read('.dockerignore').split('\n').map((l) => l.trim());
  const patterns = lines.filter((l) => l && !l.startsWith('#'));
  expect(patterns.filter((p) => p.startsWith('!'))).toEqual([]);
  return patterns;
}

interface DockerStage {
  name: string | undefined;
  lines: string[];
}

/** The Dockerfile's instructions (continuations joined, comments dropped), by stage. */
function dockerStages(): DockerStage[] {
  const text = read('deploy/Dockerfile').replace(/\\\n/g, ' ');
  const stages: DockerStage[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ name: from[1], lines: [] });
    else stages[stages.length - 1]!.lines.push(line);
  }
  return stages;
}

function copies(stage: DockerStage): Array<{ from?: string; sources: string[]; dest: string }> {
  return stage.lines
    .filter((l) => /^COPY\s/i.test(l))
    .map((l) => {
      const words = l.split(/\s+/).slice(1);
      const flags = words.filter((w) => w.startsWith('--'));
      const rest = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: rest.slice(0, -1), dest: rest[rest.length - 1]! };
    });
}

describe('executable launchers', () => {
  it.each(Object.entries(LAUNCHERS))('%s: %s is mode 0755 in git and on disk, with a node shebang, and is the package bin', (bin, file) => {
    const staged = execFileSync('git', ['ls-files', '-s', '--', file], { cwd: ROOT, encoding: 'utf8' });
    expect(staged.split(/\s+/)[0]).toBe('100755');
    expect(statSync(path.join(ROOT, file)).mode & 0o111).toBe(0o111);
    expect(read(file).startsWith('#!/usr/bin/env node\n')).toBe(true);
    const pkg = JSON.parse(read(`${file.split('/')[0]}/package.json`)) as { bin: Record<string, string>; files: string[] };
    expect(path.normalize(pkg.bin[bin]!)).toBe(path.normalize(path.relative(file.split('/')[0]!, file)));
    expect(pkg.files).toContain('bin');
  });

  it.each(Object.entries(LAUNCHERS))('%s runs through a symlink, as /usr/local/bin and node_modules/.bin link it', (bin, file) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'coffer-bin-'));
    try {
      const link = path.join(dir, bin);
      symlinkSync(path.join(ROOT, file), link);
      // Executed directly (not `node file`): a 0644 target would fail with EACCES here.
      const run = spawnSync(link, ['--help'], { encoding: 'utf8', env: { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin` }, timeout: 60_000 });
      expect({ status: run.status, error: run.error?.message }).toEqual({ status: 0, error: undefined });
      expect(run.stdout + run.stderr).toMatch(new RegExp(`usage:\\s+${bin}`, 'i'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deploy/Dockerfile and .dockerignore', () => {
  const stages = dockerStages();
  const patterns = dockerignorePatterns();
  const [build, runtime] = [stages[0]!, stages[stages.length - 1]!];

  it('keeps dependencies, compiled output, data and tests out of the build context', () => {
    for (const f of ['node_modules/x', 'server/node_modules/x', 'server/dist/main.js', 'cli/dist/main.js', 'data/pgdata', 'server/data/x', 'test/unit/a.test.ts', 'test/dist/unit/a.test.js', '.git/HEAD', 'server/tsconfig.tsbuildinfo']) {
      expect([f, dockerIgnored(patterns, f)]).toEqual([f, true]);
    }
  });

  it('has a build stage and a runtime stage that takes only production dependencies', () => {
    expect(stages).toHaveLength(2);
    expect(build.name).toBe('build');
    expect(build.lines.join('\n')).toMatch(/npm prune --omit=dev/);
    expect(build.lines.join('\n')).toMatch(/npm ci --ignore-scripts/);
    // The runtime stage gets files only from the build stage, no compiler.
    expect(copies(runtime).every((c) => c.from === 'build')).toBe(true);
    expect(runtime.lines.join('\n')).not.toMatch(/g\+\+|make|python3/);
  });

  it('COPYs only files that exist in the repository and that the context keeps', () => {
    const sources = copies(build).filter((c) => !c.from).flatMap((c) => c.sources);
    expect(sources.length).toBeGreaterThan(5);
    for (const s of sources) {
      expect([s, existsSync(path.join(ROOT, s))]).toEqual([s, true]);
      expect([s, dockerIgnored(patterns, s)]).toEqual([s, false]);
    }
    // The launchers reach npm ci (which links node_modules/.bin to them) with the manifests.
    const beforeCi = build.lines.slice(0, build.lines.findIndex((l) => /npm ci/.test(l)));
    for (const dir of ['server/bin', 'cli/bin']) expect(beforeCi.some((l) => l.startsWith('COPY') && l.includes(` ${dir} `))).toBe(true);
    // What the runtime stage takes from the build stage is either built there (dist, node_modules) or copied into it.
    const built = /(^|\/)(dist|node_modules)$/;
    for (const c of copies(runtime)) {
      for (const s of c.sources) {
        const rel = path.relative('/src', s);
        expect([s, built.test(rel) || existsSync(path.join(ROOT, rel))]).toEqual([s, true]);
      }
    }
  });

  it('links the committed 0755 launchers, not the 0644 dist/*.js files, and runs as a fixed non-root user', () => {
    const run = runtime.lines.filter((l) => l.startsWith('RUN')).join(' ');
    const links = [...run.matchAll(/ln -s (\S+) (\S+)/g)].map((m) => ({ target: m[1]!, link: m[2]! }));
    expect(links.map((l) => path.basename(l.link)).sort()).toEqual(['coffer', 'coffer-server']);
    for (const { target, link } of links) {
      const rel = path.relative('/app', target);
      expect(rel).toBe(LAUNCHERS[path.basename(link) as keyof typeof LAUNCHERS]);
      // The runtime stage has the launcher: copied from the build stage's tree.
      expect(copies(runtime).some((c) => c.sources.some((s) => rel.startsWith(path.relative('/src', s))))).toBe(true);
    }
    expect(build.lines.join(' ')).toMatch(/chmod 0755 server\/bin\/coffer-server\.js cli\/bin\/coffer\.js/);
    expect(runtime.lines).toContain('USER 10001:10001');
    expect(runtime.lines).toContain('ENTRYPOINT ["coffer-server"]');
    // The chart runs pods as the same user.
    expect(read('deploy/helm/coffer/templates/_helpers.tpl')).toMatch(/runAsUser: 10001/);
  });
});

describe('deploy/compose.yaml', () => {
  const compose = YAML.parse(read('deploy/compose.yaml'), { merge: true }) as Obj;
  const services = compose.services as Record<string, Obj>;
  const coffers = Object.keys(services).filter((s) => s.startsWith('coffer-'));

  it('has PostgreSQL, three Coffer servers and HAProxy', () => {
    expect(Object.keys(services).sort()).toEqual(['coffer-1', 'coffer-2', 'coffer-3', 'haproxy', 'postgres']);
    expect(services.postgres!.healthcheck.test.join(' ')).toMatch(/pg_isready/);
  });

  it('sizes PostgreSQL\'s memory instead of running the stock 128 MB shared_buffers', () => {
    const command = (services.postgres!.command as string[]).join(' ');
    expect(command).toMatch(/^postgres /);
    const mb = (name: string) => {
      const m = new RegExp(`-c ${name}=(\\d+)(MB|GB)`).exec(command);
      expect(m).not.toBeNull();
      return Number(m![1]) * (m![2] === 'GB' ? 1024 : 1);
    };
    expect(mb('shared_buffers')).toBeGreaterThan(128);
    expect(mb('effective_cache_size')).toBeGreaterThan(mb('shared_buffers'));
  });

  it.each(['coffer-1', 'coffer-2', 'coffer-3'])('%s builds deploy/Dockerfile, waits for a healthy PostgreSQL, uses it and is health-checked', (name) => {
    const s = services[name]!;
    const composeDir = path.join(ROOT, 'deploy');
    expect(path.resolve(composeDir, s.build.context)).toBe(path.resolve(ROOT));
    expect(existsSync(path.join(path.resolve(composeDir, s.build.context), s.build.dockerfile))).toBe(true);
    expect(s.depends_on.postgres.condition).toBe('service_healthy');
    const url = new URL(s.environment.COFFER_DATABASE_URL);
    expect(url.hostname).toBe('postgres');
    expect(url.username).toBe(services.postgres!.environment.POSTGRES_USER);
    expect(url.pathname).toBe(`/${services.postgres!.environment.POSTGRES_DB}`);
    expect(s.healthcheck.test.join(' ')).toContain('/v1/sys/health?sealedcode=200&uninitcode=200');
    // Only HAProxy is published; the servers are reached through it (or `compose exec`).
    expect(s.ports).toBeUndefined();
    expect(s.read_only).toBe(true);
    expect(s.cap_drop).toEqual(['ALL']);
  });

  it('publishes HAProxy on the loopback only, with its configuration from deploy/haproxy', () => {
    const h = services.haproxy!;
    for (const p of h.ports as string[]) expect(p.startsWith('127.0.0.1:')).toBe(true);
    const [src] = (h.volumes[0] as string).split(':');
    expect(path.resolve(ROOT, 'deploy', src!)).toBe(path.join(ROOT, 'deploy/haproxy/haproxy.cfg'));
    // HAProxy's backend lists exactly the compose servers.
    const servers = [...read('deploy/haproxy/haproxy.cfg').matchAll(/^\s*server\s+(\S+)\s+(\S+):8200/gm)].map((m) => m[2]);
    expect(servers.sort()).toEqual(coffers.sort());
  });
});

describe('deploy/haproxy/haproxy.cfg', () => {
  it('is a valid configuration (haproxy -c) that health-checks /v1/sys/ready', () => {
    const check = spawnSync('haproxy', ['-c', '-f', path.join(ROOT, 'deploy/haproxy/haproxy.cfg')], { encoding: 'utf8', env: TOOL_ENV });
    expect({ error: check.error?.message, hint: check.error ? 'install haproxy (Debian: apt-get install haproxy; .ci/run does)' : '' }).toEqual({ error: undefined, hint: '' });
    expect({ status: check.status, output: check.status === 0 ? '' : check.stdout + check.stderr }).toEqual({ status: 0, output: '' });
    const cfg = read('deploy/haproxy/haproxy.cfg');
    expect(cfg).toMatch(/http-check send meth GET uri \/v1\/sys\/ready\n/);
    expect(cfg).toMatch(/http-check expect status 200\n/);
    // A request that reached a server is replayed only if it is a read (a write must not happen twice):
    // beyond conn-failure, L7 retries are switched off for every method but GET/HEAD.
    expect(cfg).toMatch(/^\s*retry-on conn-failure empty-response\n/m);
    expect(cfg).toMatch(/^\s*http-request disable-l7-retry unless METH_GET\n/m);
  });
});

describe('deploy/systemd/coffer.service', () => {
  const unit = read('deploy/systemd/coffer.service');
  const directives = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);

  it('is hardened as the operator guide says', () => {
    const want: Record<string, string> = {
      UMask: '0077',
      MemorySwapMax: '0',
      LimitCORE: '0',
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      ProtectClock: 'yes',
      ProtectKernelLogs: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectControlGroups: 'yes',
      RestrictSUIDSGID: 'yes',
      RestrictNamespaces: 'yes',
      LockPersonality: 'yes',
      CapabilityBoundingSet: '',
      SystemCallArchitectures: 'native',
      User: 'coffer',
    };
    for (const [k, v] of Object.entries(want)) expect([k, directives(k)]).toEqual([k, [v]]);
    expect(directives('SystemCallFilter')).toContain('@system-service');
    expect(directives('ReadWritePaths')[0]!.split(' ')).toContain('/var/lib/coffer');
    expect(directives('Environment')).toContain('COFFER_DATA_DIR=/var/lib/coffer');
    expect(directives('ExecStart')).toEqual(['/opt/coffer/server/bin/coffer-server.js']);
  });

  describe('with systemd-analyze', () => {
    let dir: string;
    let file: string;
    beforeAll(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'coffer-unit-'));
      file = path.join(dir, 'coffer.service');
      // Installed in /opt/coffer; here the repository stands in for it (verify checks ExecStart exists).
      writeFileSync(file, unit.replaceAll('/opt/coffer/', ROOT.endsWith('/') ? ROOT : `${ROOT}/`));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('verifies without a warning', () => {
      const run = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', env: TOOL_ENV });
      expect({ error: run.error?.message, hint: run.error ? 'install systemd (Debian: apt-get install systemd; .ci/run does)' : '' }).toEqual({ error: undefined, hint: '' });
      expect({ status: run.status, output: (run.stdout + run.stderr).trim() }).toEqual({ status: 0, output: '' });
    });

    it('scores an exposure level of at most 2.0 ("OK") in systemd-analyze security', () => {
      const run = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8', env: TOOL_ENV });
      const m = /Overall exposure level for coffer\.service: ([\d.]+)/.exec(run.stdout);
      expect({ found: m !== null, output: m ? '' : run.stdout + run.stderr }).toEqual({ found: true, output: '' });
      console.log(`systemd-analyze security: exposure ${m![1]}`);
      expect(Number(m![1])).toBeLessThanOrEqual(2.0);
    });
  });

  it('the launcher it starts is a real file (not a link into dist/)', () => {
    expect(lstatSync(path.join(ROOT, 'server/bin/coffer-server.js')).isFile()).toBe(true);
  });
});
