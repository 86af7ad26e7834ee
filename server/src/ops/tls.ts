/**
 * TLS for the API listener: certificate and key from files, an optional client
 * CA for mutual TLS, and a reload (SIGHUP) that swaps the certificate on the
 * running listener, so renewed certificates need no restart and no connection
 * is dropped.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { ConfigError } from '../errors.js';

/** The files behind the listener's secure context. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCaFile?: string | undefined;
}

/** The listener's settings, as the config names them (the config is handed in; this module does not read it). */
export interface ListenSettings {
  host: string;
  allowInsecureHttp: boolean;
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  tlsClientCaFile?: string | undefined;
}

export function tlsFilesOf(config: ListenSettings): TlsFiles | undefined {
  if (!config.tlsCertFile || !config.tlsKeyFile) return undefined;
  return { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, clientCaFile: config.tlsClientCaFile };
}

/**
 * Reads the certificate chain, key and client CA, and checks that they form a
 * usable context (PEM parses, the key matches the certificate). Throws
 * ConfigError naming the file, never its content.
 */
export function readTlsContext(files: TlsFiles): SecureContextOptions {
  const read = (what: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(`cannot read the TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const options: SecureContextOptions = {
    cert: read('certificate', files.certFile),
    key: read('key', files.keyFile),
  };
  if (files.clientCaFile) options.ca = read('client CA', files.clientCaFile);
  try {
    createSecureContext(options);
  } catch (err) {
    // OpenSSL's message (e.g. "key values mismatch") says what is wrong, not what the key is.
    throw new ConfigError(
      `TLS certificate ${files.certFile} / key ${files.keyFile}${files.clientCaFile ? ` / client CA ${files.clientCaFile}` : ''} are not usable: ${(err as Error).message}`,
    );
  }
  return options;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || h.startsWith('127.') || h.startsWith('::ffff:127.');
}

/**
 * Why the API listener may not start, or null. Tokens and secret values cross
 * the API, so plain HTTP is refused off loopback unless explicitly allowed
 * (COFFER_ALLOW_INSECURE_HTTP=true, for a TLS-terminating proxy in front).
 */
export function insecureListenProblem(config: ListenSettings): string | null {
  if (tlsFilesOf(config) || isLoopbackHost(config.host) || config.allowInsecureHttp) return null;
  return (
    `refusing to serve plain HTTP on the non-loopback address ${config.host}: tokens and secrets would cross the network unencrypted. ` +
    'Set COFFER_TLS_CERT_FILE and COFFER_TLS_KEY_FILE, or, when a TLS-terminating proxy sits in front, COFFER_ALLOW_INSECURE_HTTP=true'
  );
}
