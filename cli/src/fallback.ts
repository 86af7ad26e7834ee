/**
 * `coffer run --fallback FILE`: an encrypted copy of the last good fetch, used
 * (with a warning) when the server cannot be reached.
 *
 * Encryption: AES-256-GCM, a fresh 96-bit random nonce per write, and AAD that
 * binds the format version, the server address, the namespace and the folder,
 * so a copy made for one folder or server cannot be passed off as another's.
 *
 * The key, and the threat model: the key is 32 random bytes kept apart from
 * the copy — COFFER_FALLBACK_KEY (base64) when set, else the file `fallback.key`
 * (0600) in the config dir, created on first use. The copy is safe wherever it
 * travels without the key: a backup, a volume snapshot, an image layer, a file
 * committed by mistake. It is NOT protected from someone who can read the
 * user's config dir: they can read the token file there too, which is worth
 * more. We do not derive the key from the token (Doppler's way) because Coffer
 * tokens change on every renewal and every CI login, which would make the copy
 * unreadable exactly when it is needed. In a container, mount the key from the
 * orchestrator's secret store (COFFER_FALLBACK_KEY) and the copy on a volume.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import path from 'node:path';
import { CofferError } from '@coffer/sdk';
import { configDir, readPrivateFile, writeFileAtomic } from './config.js';
import { CliError } from './errors.js';

const FORMAT = 'coffer-fallback-v1';

export interface FallbackScope {
  address: string;
  namespace: string;
  folder: string;
}

export interface FallbackData {
  /** The folder's secrets as env vars. */
  env: Record<string, string>;
  /** coffer:// reference (as written) → value it resolved to. */
  refs: Record<string, string>;
}

interface FallbackFile {
  format: typeof FORMAT;
  alg: 'A256GCM';
  created_at: string;
  address: string;
  namespace: string;
  folder: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

export function fallbackKeyFile(): string {
  return path.join(configDir(), 'fallback.key');
}

/** The key, creating the key file on first use when `create`. Callers zero it after use. */
function loadKey(create: boolean): Buffer | undefined {
  const fromEnv = process.env.COFFER_FALLBACK_KEY;
  if (fromEnv) {
    const key = Buffer.from(fromEnv, 'base64');
    if (key.length !== 32) throw new CliError('COFFER_FALLBACK_KEY must be 32 bytes in base64 (e.g. openssl rand -base64 32)');
    return key;
  }
  const file = fallbackKeyFile();
  const text = readPrivateFile(file, 'fallback key file');
  if (text !== undefined) {
    const key = Buffer.from(text.trim(), 'base64');
    if (key.length !== 32) throw new CliError(`the fallback key file ${file} does not hold a 32-byte base64 key`);
    return key;
  }
  if (!create) return undefined;
  const key = randomBytes(32);
  writeFileAtomic(file, `${key.toString('base64')}\n`);
  return key;
}

function aad(scope: FallbackScope): Buffer {
  return Buffer.from(JSON.stringify([FORMAT, scope.address, scope.namespace, scope.folder]), 'utf8');
}

/** Encrypts and writes the copy: 0600, atomic (a crash leaves the old copy or the new one). */
export function saveFallback(file: string, scope: FallbackScope, data: FallbackData): void {
  const key = loadKey(true)!;
  const plain = Buffer.from(JSON.stringify(data), 'utf8');
  try {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(aad(scope));
    const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
    const body: FallbackFile = {
      format: FORMAT,
      alg: 'A256GCM',
      created_at: new Date().toISOString(),
      address: scope.address,
      namespace: scope.namespace,
      folder: scope.folder,
      iv: iv.toString('base64'),
      ciphertext: ciphertext.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
    };
    writeFileAtomic(file, `${JSON.stringify(body)}\n`);
  } finally {
    key.fill(0);
    plain.fill(0);
  }
}

/** Reads and decrypts the copy; fails with a clear message when it is missing, altered or for another scope. */
export function loadFallback(file: string, scope: FallbackScope): { data: FallbackData; createdAt: string } {
  const text = readPrivateFile(file, 'fallback file');
  if (text === undefined) throw new CliError(`no fallback copy at ${file} yet (it is written after a successful fetch)`);
  let body: FallbackFile;
  try {
    body = JSON.parse(text) as FallbackFile;
  } catch {
    throw new CliError(`the fallback file ${file} is damaged`);
  }
  if (body.format !== FORMAT || body.alg !== 'A256GCM') throw new CliError(`the fallback file ${file} has an unknown format`);
  if (body.address !== scope.address || body.namespace !== scope.namespace || body.folder !== scope.folder) {
    throw new CliError(
      `the fallback file ${file} holds ${body.namespace}:${body.folder || '/'} from ${body.address}, not ${scope.namespace}:${scope.folder || '/'} from ${scope.address}`,
    );
  }
  const key = loadKey(false);
  if (!key) throw new CliError(`no fallback key (COFFER_FALLBACK_KEY or ${fallbackKeyFile()}): the fallback copy cannot be read`);
  let plain: Buffer | undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(body.iv, 'base64'));
    decipher.setAAD(aad(scope));
    decipher.setAuthTag(Buffer.from(body.tag, 'base64'));
    plain = Buffer.concat([decipher.update(Buffer.from(body.ciphertext, 'base64')), decipher.final()]);
    const data = JSON.parse(plain.toString('utf8')) as FallbackData;
    return { data, createdAt: body.created_at };
  } catch {
    throw new CliError(`the fallback file ${file} cannot be decrypted (altered, or written with another key)`);
  } finally {
    key.fill(0);
    plain?.fill(0);
  }
}

/**
 * Whether a failed fetch may fall back: only when the server could not answer
 * (network error, timeout, 502/503/504). A denial (401/403), a missing folder
 * (404) or a bad request must fail: falling back would keep a revoked client working.
 */
export function isUnreachable(err: unknown): boolean {
  if (err instanceof CliError && err.cause !== undefined) return isUnreachable(err.cause);
  if (!(err instanceof CofferError)) return false;
  if (err.status === 0) return err.code === 'unavailable' || err.code === 'timeout';
  return err.status === 502 || err.status === 503 || err.status === 504;
}
