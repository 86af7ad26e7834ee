// Throwaway X.509 material for TLS tests, made with the `openssl` CLI (node:crypto can make
// keys but not certificates), and a small HTTPS client that reports which certificate it saw.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

export interface CertFiles {
  certFile: string;
  keyFile: string;
  cert: string;
  /** SHA-256 fingerprint as node prints it (AA:BB:…). */
  fingerprint256: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') {
      throw new Error(
        'the TLS tests need the `openssl` command to create throwaway certificates and it is not installed ' +
          '(Debian/Ubuntu: sudo apt-get install openssl; macOS: brew install openssl)',
      );
    }
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function files(dir: string, name: string): CertFiles {
  const certFile = join(dir, `${name}.pem`);
  const cert = readFileSync(certFile, 'utf8');
  return { certFile, keyFile: join(dir, `${name}-key.pem`), cert, fingerprint256: new X509Certificate(cert).fingerprint256 };
}

/** A directory of certificates, removed by `cleanup()`. */
export class CertDir {
  readonly dir = mkdtempSync(join(tmpdir(), 'coffer-tls-'));

  /** A self-signed server certificate for 127.0.0.1 / localhost (the client trusts it directly). */
  server(name: string, cn = 'coffer-test', subjectAltName = 'IP:127.0.0.1,DNS:localhost'): CertFiles {
    openssl(
      ['req', '-x509', ...EC, '-keyout', `${name}-key.pem`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`,
        '-addext', `subjectAltName=${subjectAltName}`],
      this.dir,
    );
    return files(this.dir, name);
  }

  /** A CA certificate that can sign client certificates. */
  ca(name: string): CertFiles {
    openssl(
      ['req', '-x509', ...EC, '-keyout', `${name}-key.pem`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      this.dir,
    );
    return files(this.dir, name);
  }

  /** A client certificate with subject `subject` (e.g. /CN=ci-runner/O=Acme) signed by `ca`. */
  client(name: string, subject: string, ca: CertFiles, subjectAltName?: string): CertFiles {
    openssl(['req', '-new', ...EC, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', subject], this.dir);
    writeFileSync(
      join(this.dir, `${name}.ext`),
      `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n${subjectAltName ? `subjectAltName=${subjectAltName}\n` : ''}`,
    );
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', String(Date.now()),
        '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`],
      this.dir,
    );
    return files(this.dir, name);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface HttpsResult {
  status: number;
  body: any;
  /** Fingerprint of the certificate the server presented. */
  peerFingerprint256: string;
  /** True when the request went over a kept-alive connection opened earlier. */
  reusedSocket: boolean;
}

export interface HttpsOptions {
  /** Trust anchor for the server certificate. */
  ca: string;
  /** Client certificate and key (PEM), for mutual TLS. */
  cert?: string;
  key?: string;
  agent?: https.Agent;
  token?: string;
  method?: string;
  /** Sent as JSON. */
  body?: unknown;
}

export function httpsRequest(url: string, opts: HttpsOptions): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: opts.method ?? 'GET',
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        agent: opts.agent ?? false,
        headers: {
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, body, peerFingerprint256: fingerprint, reusedSocket: req.reusedSocket });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body !== undefined ? JSON.stringify(opts.body) : undefined);
  });
}
