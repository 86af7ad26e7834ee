/**
 * Client certificates (mutual TLS). When COFFER_TLS_CLIENT_CA_FILE is set the
 * TLS listener asks every client for a certificate but lets the handshake
 * succeed without one (`rejectUnauthorized: false`), because token-based
 * callers must keep working. Whether the certificate chains to the configured
 * CA is decided here, per connection: only a verified certificate is exposed,
 * as `res.locals.clientCertificate`, which the route of the `cert` login method
 * (POST /v1/auth/cert/login) hands to the login as a value.
 */
import type { RequestHandler, Response } from 'express';
import type { TLSSocket } from 'node:tls';
import type { ClientCertificate } from '../auth/cert.js';

export type { ClientCertificate } from '../auth/cert.js';

/** `DNS:a.example, URI:spiffe://acme/ci, IP Address:10.0.0.1` → DNS names and URIs. */
function subjectAltNames(raw: string | undefined): { dnsNames: string[]; uris: string[] } {
  const dnsNames: string[] = [];
  const uris: string[] = [];
  for (const part of (raw ?? '').split(/,\s*/)) {
    if (part.startsWith('DNS:')) dnsNames.push(part.slice(4));
    else if (part.startsWith('URI:')) uris.push(part.slice(4));
  }
  return { dnsNames, uris };
}

/** Verified certificate per connection: a keep-alive connection is checked once. */
const byConnection = new WeakMap<TLSSocket, ClientCertificate | null>();

type CertFields = Record<string, string | string[] | undefined>;

/** A plain copy of a subject or issuer, without absent fields. */
function fields(f: CertFields): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(f)) if (v !== undefined) out[k] = v;
  return out;
}

function verifiedCertificate(socket: TLSSocket): ClientCertificate | null {
  const cached = byConnection.get(socket);
  if (cached !== undefined) return cached;
  let known: ClientCertificate | null = null;
  // `authorized` is true only when the peer sent a certificate that chains to the CA.
  if (socket.authorized) {
    const cert = socket.getPeerCertificate();
    if (cert && Object.keys(cert).length > 0) {
      known = {
        subject: fields(cert.subject),
        issuer: fields(cert.issuer),
        serialNumber: cert.serialNumber,
        fingerprint256: cert.fingerprint256,
        validFrom: cert.valid_from,
        validTo: cert.valid_to,
        ...subjectAltNames(cert.subjectaltname),
      };
    }
  }
  byConnection.set(socket, known);
  return known;
}

/** Sets `res.locals.clientCertificate` when the connection presented a verified client certificate. */
export const clientCertificate: RequestHandler = (req, res, next) => {
  const socket = req.socket as Partial<TLSSocket>;
  if (socket.encrypted) {
    const cert = verifiedCertificate(req.socket as TLSSocket);
    if (cert) res.locals.clientCertificate = cert;
  }
  next();
};

export function clientCertificateOf(res: Response): ClientCertificate | undefined {
  return res.locals.clientCertificate as ClientCertificate | undefined;
}
