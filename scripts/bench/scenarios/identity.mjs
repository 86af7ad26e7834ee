// Identity scenarios of the bench (b3, l1-l3): a secret read with a policy-checked (non-root)
// token, and login throughput per method (userpass/argon2id, AppRole, JWT from a local
// OIDC issuer with a real RS256 key). Set-up goes through the public API only.
import http from 'node:http';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

async function call(base, method, urlPath, token, body) {
  const res = await fetch(base + urlPath, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${urlPath}: ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

/**
 * A user whose policy grants read on bench:db/* (plus unrelated rules, as a real policy has,
 * and a deny the request does not hit) — the read goes through full policy evaluation.
 */
export async function policyReadRequest(server, readPath) {
  const { base, token } = server;
  await call(base, 'PUT', '/v1/sys/policies/bench-reader', token, {
    rules: [
      { namespace: 'payments-*', path: '*', capabilities: ['read', 'list'] },
      { namespace: 'bench', path: 'db/*', capabilities: ['read', 'list'] },
      { namespace: 'bench', path: 'admin/*', capabilities: ['read'], effect: 'deny' },
    ],
  });
  await call(base, 'PUT', '/v1/auth/userpass/users/bench-user', token, { password: 'bench-password-1', policies: ['bench-reader'] });
  const login = await call(base, 'POST', '/v1/auth/userpass/login', null, { username: 'bench-user', password: 'bench-password-1' });
  return { url: base + readPath, method: 'GET', headers: { authorization: `Bearer ${login.auth.client_token}` } };
}

export async function userpassLoginRequest(server) {
  return {
    url: `${server.base}/v1/auth/userpass/login`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'bench-user', password: 'bench-password-1' }),
  };
}

export async function approleLoginRequest(server) {
  const { base, token } = server;
  await call(base, 'PUT', '/v1/auth/approle/roles/bench-role', token, { policies: ['bench-reader'] });
  const { role_id } = await call(base, 'GET', '/v1/auth/approle/roles/bench-role/role-id', token);
  const { secret_id } = await call(base, 'POST', '/v1/auth/approle/roles/bench-role/secret-id', token, {});
  return {
    url: `${base}/v1/auth/approle/login`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ role_id, secret_id }),
  };
}

/** Starts a local issuer (JWKS over HTTP), configures it in Coffer, and returns the login request and a stop function. */
export async function jwtLoginRequest(server) {
  const { base, token } = server;
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench-1', alg: 'RS256', use: 'sig' };
  const issuer = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise((resolve) => issuer.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${issuer.address().port}`;
  await call(base, 'PUT', '/v1/auth/jwt/issuers/bench', token, { issuer: url, jwks_url: `${url}/jwks` });
  await call(base, 'PUT', '/v1/auth/jwt/roles/bench-ci', token, {
    issuer: 'bench',
    bound_audiences: ['coffer'],
    bound_claims: { repository: 'acme/app', ref: 'refs/heads/main' },
    policies: ['bench-reader'],
  });
  const jwt = await new SignJWT({ sub: 'repo:acme/app:ref:refs/heads/main', repository: 'acme/app', ref: 'refs/heads/main' })
    .setProtectedHeader({ alg: 'RS256', kid: 'bench-1' })
    .setIssuer(url)
    .setAudience('coffer')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey);
  return {
    request: { url: `${base}/v1/auth/jwt/login`, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ role: 'bench-ci', jwt }) },
    stop: () => new Promise((resolve) => { issuer.closeAllConnections(); issuer.close(() => resolve()); }),
  };
}
