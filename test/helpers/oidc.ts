// A local OIDC issuer on 127.0.0.1 standing in for GitHub Actions, GitLab CI or a
// Kubernetes cluster: real key pairs (RS256, ES256), a discovery document, a JWKS
// endpoint, key rotation, and tokens minted with whatever claims a test needs.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

type Alg = 'RS256' | 'ES256';

interface SigningKey {
  kid: string;
  alg: Alg;
  privateKey: CryptoKey;
  jwk: JWK;
}

export interface MintOptions {
  audience?: string | string[];
  /** Seconds from now (negative: already expired). */
  expiresIn?: number;
  /** Sign with this key id (default: the newest key). */
  kid?: string;
  issuer?: string;
  notBefore?: number;
}

export class LocalOidcIssuer {
  private server!: http.Server;
  private keys: SigningKey[] = [];
  /** How many times the JWKS was fetched (key-rotation tests look at it). */
  jwksFetches = 0;
  url = '';

  static async start(algs: Alg[] = ['RS256']): Promise<LocalOidcIssuer> {
    const issuer = new LocalOidcIssuer();
    for (const alg of algs) await issuer.addKey(alg);
    issuer.server = http.createServer((req, res) => issuer.handle(req, res));
    await new Promise<void>((resolve) => issuer.server.listen(0, '127.0.0.1', resolve));
    issuer.url = `http://127.0.0.1:${(issuer.server.address() as AddressInfo).port}`;
    return issuer;
  }

  /** Adds a key (published in the JWKS from now on) and returns its kid. */
  async addKey(alg: Alg): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const kid = `${alg.toLowerCase()}-${this.keys.length + 1}-${Date.now().toString(36)}`;
    const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    this.keys.push({ kid, alg, privateKey, jwk });
    return kid;
  }

  /** Rotation: a new key signs from now on and the old ones leave the JWKS. */
  async rotate(alg: Alg = 'RS256'): Promise<string> {
    const kid = await this.addKey(alg);
    this.keys = this.keys.filter((k) => k.kid === kid);
    return kid;
  }

  /** A PEM public key of the newest key (for issuers configured with static keys). */
  async publicKeyPem(): Promise<string> {
    const { createPublicKey } = await import('node:crypto');
    return createPublicKey({ key: this.keys[this.keys.length - 1]!.jwk as import('node:crypto').JsonWebKey, format: 'jwk' })
      .export({ type: 'spki', format: 'pem' })
      .toString();
  }

  async mint(claims: JWTPayload, opts: MintOptions = {}): Promise<string> {
    const key = opts.kid ? this.keys.find((k) => k.kid === opts.kid) : this.keys[this.keys.length - 1];
    if (!key) throw new Error(`no key ${opts.kid}`);
    const now = Math.floor(Date.now() / 1000);
    let jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(opts.issuer ?? this.url)
      .setAudience(opts.audience ?? 'coffer')
      .setIssuedAt(now)
      .setExpirationTime(now + (opts.expiresIn ?? 300));
    if (opts.notBefore !== undefined) jwt = jwt.setNotBefore(now + opts.notBefore);
    return jwt.sign(key.privateKey);
  }

  /** A GitHub Actions ID token's claims for `repository` on `ref`. */
  static githubClaims(repository: string, ref: string, extra: JWTPayload = {}): JWTPayload {
    return {
      sub: `repo:${repository}:ref:${ref}`,
      repository,
      repository_owner: repository.split('/')[0],
      ref,
      ref_type: 'branch',
      environment: 'production',
      job_workflow_ref: `${repository}/.github/workflows/deploy.yml@${ref}`,
      workflow: 'deploy',
      run_id: '1234567890',
      actor: 'octocat',
      event_name: 'push',
      ...extra,
    };
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.url === '/.well-known/openid-configuration') {
      return this.json(res, {
        issuer: this.url,
        jwks_uri: `${this.url}/jwks`,
        id_token_signing_alg_values_supported: ['RS256', 'ES256'],
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
      });
    }
    if (req.url === '/jwks') {
      this.jwksFetches += 1;
      return this.json(res, { keys: this.keys.map((k) => k.jwk) });
    }
    res.statusCode = 404;
    res.end();
  }

  private json(res: http.ServerResponse, body: unknown): void {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  }
}
