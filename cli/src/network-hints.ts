/**
 * What to do when the server could not be reached: the SDK reports the low-level
 * reason (ECONNRESET, DEPTH_ZERO_SELF_SIGNED_CERT, ...), which tells a user little.
 * Loaded only after a request failed, so successful commands do not pay for it.
 */
import { CofferError } from '@coffer/sdk';

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

type NodeError = Error & { code?: unknown; cert?: { subjectaltname?: string } };

/** The Node error under the SDK's error (CofferError → TypeError('fetch failed') → Error with a code). */
function rootError(err: unknown): NodeError | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e instanceof Error; i++) {
    if (typeof (e as NodeError).code === 'string' && !(e instanceof CofferError)) return e;
    e = e.cause;
  }
  return undefined;
}

/** True when host:port completes a TLS handshake (certificate not checked: only "does it speak TLS?"). */
async function speaksTls(url: URL): Promise<boolean> {
  const tls = await import('node:tls');
  return new Promise((resolve) => {
    const socket = tls.connect({ host: url.hostname, port: Number(url.port || 80), rejectUnauthorized: false, servername: url.hostname.match(/^[\d.]+$|:/) ? undefined : url.hostname });
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(3000, () => done(false));
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** A hint for a request that got no answer, or undefined when there is nothing better to say than the error. */
export async function networkHint(err: unknown): Promise<string | undefined> {
  if (!(err instanceof CofferError) || err.status !== 0 || err.code !== 'unavailable') return undefined;
  const cause = rootError(err);
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  // The SDK's message names the origin it tried: "cannot reach Coffer at https://host:port: CODE".
  const origin = /cannot reach Coffer at (https?:\/\/\S+?)(?=: |$)/.exec(err.message)?.[1];
  if (!origin) return undefined;
  const url = new URL(origin);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    // "DNS:coffer.internal, IP Address:10.0.0.5" (Node's checkServerIdentity error carries the certificate).
    const names = cause?.cert?.subjectaltname?.split(/,\s*/).map((n) => n.replace(/^[^:]+:/, '')).join(', ');
    return (
      `the server's certificate ${names ? `is for ${names}, not ${url.hostname}` : `does not name ${url.hostname}`}. ` +
      `Connect by a name it holds (--addr https://NAME:${url.port || 443}), ` +
      'or keep this address and set COFFER_TLS_SERVER_NAME=NAME to check the certificate against NAME'
    );
  }
  if (code !== undefined && UNTRUSTED.has(code)) {
    return 'the server\'s certificate is signed by a CA this machine does not trust: set COFFER_CACERT=/path/to/ca.pem (or NODE_EXTRA_CA_CERTS). COFFER_SKIP_VERIFY=1 turns verification off, for a test only';
  }
  if (code === 'CERT_HAS_EXPIRED') return 'the server\'s certificate has expired: renew it (coffer-server reloads it on SIGHUP)';
  if (url.protocol === 'https:' && (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER')) {
    return `the server does not speak TLS there: use http://${url.host} (or give the server COFFER_TLS_CERT_FILE and COFFER_TLS_KEY_FILE)`;
  }
  if (url.protocol === 'http:' && (code === 'ECONNRESET' || code === 'EPIPE' || code === 'HPE_INVALID_CONSTANT') && (await speaksTls(url))) {
    return `the server speaks HTTPS: use https://${url.host} in --addr or COFFER_ADDR`;
  }
  return undefined;
}
