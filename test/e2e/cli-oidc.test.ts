// End to end: `coffer login oidc` in a simulated GitHub Actions job and GitLab CI job, against a
// real server process. A local OIDC issuer stands in for GitHub's/GitLab's (keys over discovery),
// and a small HTTP server for the Actions runtime's ID-token endpoint (the cloud part we cannot
// run): it checks the request token and mints a token for the audience asked for. Issuer and role
// are configured with the CLI's own admin commands.

import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LocalOidcIssuer } from '../helpers/oidc.js';
import { runCli, startDevServer, type CliResult, type DevServer } from '../helpers/process.js';

const AUDIENCE = 'https://coffer.acme.example';
const REQUEST_TOKEN = `gh-runtime-${randomBytes(8).toString('hex')}`;
const DB_VALUE = `pg-${randomBytes(8).toString('hex')}`;

let server: DevServer;
let issuer: LocalOidcIssuer;
let github: Server;
let githubUrl: string;
let home: string;
let ref = 'refs/heads/main';
const tokenRequests: Array<{ audience: string | null; auth: string | undefined }> = [];

type Env = Record<string, string | undefined>;
const root = (args: string[], input?: string): Promise<CliResult> =>
  runCli(args, { input, env: { HOME: home, COFFER_ADDR: server.address, COFFER_TOKEN: server.rootToken } });

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-oidc-'));
  issuer = await LocalOidcIssuer.start(['RS256']);
  server = await startDevServer();

  // The Actions runtime's token endpoint: GET <url>&audience=AUD with "Authorization: bearer <request token>".
  github = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    tokenRequests.push({ audience: url.searchParams.get('audience'), auth: req.headers.authorization });
    if (req.headers.authorization !== `bearer ${REQUEST_TOKEN}`) {
      res.writeHead(401).end();
      return;
    }
    void issuer.mint(LocalOidcIssuer.githubClaims('acme/app', ref), { audience: url.searchParams.get('audience') ?? 'none' }).then((value) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ count: 1, value }));
    });
  });
  await new Promise<void>((resolve) => github.listen(0, '127.0.0.1', resolve));
  githubUrl = `http://127.0.0.1:${(github.address() as AddressInfo).port}/_apis/distributedtask/hubs/build/plans/p/jobs/j/idtoken?api-version=2.0`;

  const must = async (r: Promise<CliResult>) => {
    const res = await r;
    if (res.code !== 0) throw new Error(`setup failed: ${res.stderr}`);
  };
  await must(root(['ns', 'create', 'app-prod']));
  await must(root(['-n', 'app-prod', 'secret', 'put', 'db/password', `password=${DB_VALUE}`]));
  await must(root(['policy', 'write', 'app-prod-ci', '-'], JSON.stringify({ rules: [{ namespace: 'app-prod', path: '*', capabilities: ['read', 'list'] }] })));
  await must(root(['jwt', 'issuer', 'github', '--issuer', issuer.url, '--discovery-url', issuer.url]));
  const role = path.join(home, 'role.json');
  await writeFile(
    role,
    JSON.stringify({
      issuer: 'github',
      bound_audiences: [AUDIENCE],
      bound_claims: { repository: 'acme/app', ref: 'refs/heads/main' },
      claim_mappings: { repository: 'repository' },
      policies: ['app-prod-ci'],
      token_ttl: 600,
    }),
  );
  await must(root(['jwt', 'role', 'write', 'acme-app-main', role]));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await issuer?.stop();
  if (github) await new Promise((resolve) => github.close(resolve));
  if (home) await rm(home, { recursive: true, force: true });
});

/** A CI job's environment in its own HOME. */
async function job(ci: Env): Promise<{ env: Env; cleanup(): Promise<void> }> {
  const h = await mkdtemp(path.join(os.tmpdir(), 'coffer-e2e-oidc-job-'));
  return { env: { HOME: h, COFFER_ADDR: server.address, ...ci }, cleanup: () => rm(h, { recursive: true, force: true }) };
}

const githubEnv = (): Env => ({ GITHUB_ACTIONS: 'true', ACTIONS_ID_TOKEN_REQUEST_URL: githubUrl, ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN });
const printDb = ['node', '-e', 'process.stdout.write(process.env.DB_PASSWORD ?? "unset")'];

describe('coffer login oidc', () => {
  it('GitHub Actions: asks the runtime for a token with the audience, logs in, and `coffer run` gets the secrets', async () => {
    const { env, cleanup } = await job(githubEnv());
    try {
      tokenRequests.length = 0;
      const login = await runCli(['login', 'oidc', '--role', 'acme-app-main', '--audience', AUDIENCE, '--format', 'json'], { env });
      expect(login.stderr).toBe('');
      expect(login.code).toBe(0);
      expect(JSON.parse(login.stdout)).toMatchObject({ identity: 'jwt:acme-app-main:repo:acme/app:ref:refs/heads/main', policies: ['app-prod-ci'], metadata: { repository: 'acme/app' } });
      expect(tokenRequests).toEqual([{ audience: AUDIENCE, auth: `bearer ${REQUEST_TOKEN}` }]);
      expect(login.stdout + login.stderr).not.toContain(REQUEST_TOKEN);

      const run = await runCli(['-n', 'app-prod', 'run', '--', ...printDb], { env });
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(DB_VALUE);
    } finally {
      await cleanup();
    }
  });

  it('GitHub Actions: the wrong audience or branch is refused (exit 3) with the server\'s reason, and nothing is stored', async () => {
    const { env, cleanup } = await job(githubEnv());
    try {
      const wrongAud = await runCli(['login', 'oidc', '--role', 'acme-app-main'], { env }); // default audience "coffer"
      expect(wrongAud.code).toBe(3);
      expect(wrongAud.stderr).toContain('permission_denied');
      ref = 'refs/heads/feature/x';
      const branch = await runCli(['login', 'oidc', '--role', 'acme-app-main', '--audience', AUDIENCE], { env });
      expect(branch.code).toBe(3);
      expect(branch.stderr).toContain('claim ref does not match');
      expect(existsSync(path.join(env.HOME!, '.config', 'coffer', 'token'))).toBe(false);
    } finally {
      ref = 'refs/heads/main';
      await cleanup();
    }
  });

  it('GitLab CI: the id_tokens variable (COFFER_ID_TOKEN, or --token-env) is used as is', async () => {
    const jwt = await issuer.mint(LocalOidcIssuer.githubClaims('acme/app', 'refs/heads/main'), { audience: AUDIENCE });
    const { env, cleanup } = await job({ GITLAB_CI: 'true', COFFER_ID_TOKEN: jwt });
    try {
      const login = await runCli(['login', 'oidc', '--role', 'acme-app-main'], { env });
      expect(login.code).toBe(0);
      expect(login.stdout).toContain('jwt:acme-app-main');
      const run = await runCli(['-n', 'app-prod', 'run', '--', ...printDb], { env });
      expect(run.stdout).toBe(DB_VALUE);
      const named = await runCli(['login', 'oidc', '--role', 'acme-app-main', '--token-env', 'VAULT_ID_TOKEN', '--token-only'], {
        env: { ...env, COFFER_ID_TOKEN: undefined, VAULT_ID_TOKEN: jwt },
      });
      expect(named.code).toBe(0);
      expect(named.stdout.trim().split('.')).toHaveLength(3);
    } finally {
      await cleanup();
    }
  });
});
