/**
 * The CLI's files under the user's config dir ($XDG_CONFIG_HOME/coffer, else
 * ~/.config/coffer): config.json (profiles), the token cache of each profile
 * and the fallback key. Credentials are written 0600 by an atomic rename, and
 * a credential file other users can read is refused (as ssh refuses such keys).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError, usageError } from './errors.js';

export const DEFAULT_ADDRESS = 'http://127.0.0.1:8200';
export const DEFAULT_PROFILE = 'default';

export interface Profile {
  address?: string;
  namespace?: string;
  /** Token cache file of this profile (default: token for "default", tokens/<profile> otherwise). */
  token_file?: string;
}

export interface ConfigFile {
  /** Used when neither --profile nor COFFER_PROFILE names one. */
  default_profile?: string;
  profiles?: Record<string, Profile>;
}

export function configDir(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'coffer');
}

/** The keys of a CLI profile file; any other top-level key means the file is something else. */
const CONFIG_KEYS = new Set(['default_profile', 'profiles']);

let warnedOldName = false;

/**
 * COFFER_CLI_CONFIG, else config.json in the config dir. COFFER_CONFIG is the
 * server's config file (issue 12: one name for both made each break the other);
 * the CLI still honours it, with a warning, but only when it names a file that
 * is a CLI profile file: a server config there is left alone.
 */
export function configFilePath(): string {
  if (process.env.COFFER_CLI_CONFIG) return process.env.COFFER_CLI_CONFIG;
  const old = process.env.COFFER_CONFIG;
  if (old && looksLikeProfileFile(old)) {
    if (!warnedOldName) {
      warnedOldName = true;
      process.stderr.write(`Warning: COFFER_CONFIG names the server's config file; for the CLI's profiles use COFFER_CLI_CONFIG=${old}\n`);
    }
    return old;
  }
  return path.join(configDir(), 'config.json');
}

/** Is `file` a JSON object with only CLI profile keys? (Unreadable or missing: no.) */
function looksLikeProfileFile(file: string): boolean {
  try {
    const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).every((k) => CONFIG_KEYS.has(k));
  } catch {
    return false;
  }
}

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function checkProfileName(name: string): string {
  if (!PROFILE_NAME.test(name)) throw usageError('a profile name is 1-63 letters, digits, "_", "." or "-"');
  return name;
}

/** ~/x → $HOME/x; relative paths are relative to the config dir. */
function expandPath(file: string): string {
  if (file === '~' || file.startsWith('~/')) return path.join(os.homedir(), file.slice(1));
  return path.resolve(configDir(), file);
}

export function defaultTokenFile(profile: string): string {
  return profile === DEFAULT_PROFILE ? path.join(configDir(), 'token') : path.join(configDir(), 'tokens', profile);
}

/** The config file, or an empty config when there is none. */
export function readConfig(): ConfigFile {
  const file = configFilePath();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read the config file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`the config file ${file} is not valid JSON`);
  }
  return checkConfig(parsed, file);
}

function checkConfig(value: unknown, file: string): ConfigFile {
  const bad = (why: string) => new CliError(`the config file ${file}: ${why}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('expected a JSON object');
  const foreign = Object.keys(value).filter((k) => !CONFIG_KEYS.has(k));
  if (foreign.length > 0) {
    // Most likely coffer-server's JSON config (COFFER_CONFIG): writing profiles into it would stop the server.
    throw bad(
      `not a coffer CLI profile file (unknown key${foreign.length === 1 ? '' : 's'} ${foreign.slice(0, 3).join(', ')}: a server config?); ` +
        'point COFFER_CLI_CONFIG at the CLI\'s own file, or unset it for the default',
    );
  }
  const { default_profile, profiles } = value as Record<string, unknown>;
  if (default_profile !== undefined && typeof default_profile !== 'string') throw bad('default_profile must be a string');
  if (profiles !== undefined && (typeof profiles !== 'object' || profiles === null || Array.isArray(profiles))) throw bad('profiles must be an object');
  for (const [name, profile] of Object.entries((profiles ?? {}) as Record<string, unknown>)) {
    if (typeof profile !== 'object' || profile === null || Array.isArray(profile)) throw bad(`profile ${name} must be an object`);
    for (const [key, v] of Object.entries(profile)) {
      if (!['address', 'namespace', 'token_file'].includes(key)) throw bad(`profile ${name}: unknown setting "${key}" (address, namespace, token_file)`);
      if (typeof v !== 'string') throw bad(`profile ${name}: ${key} must be a string`);
    }
  }
  return value as ConfigFile;
}

/**
 * Writes config.json (0600: it names token files and servers, nothing secret, but it is
 * nobody else's business). The file on disk is checked again first: profiles are never
 * written over a file that is not a profile file (a server config that appeared since the read).
 */
export function writeConfig(config: ConfigFile): void {
  const file = configFilePath();
  let current: unknown;
  try {
    current = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(`cannot write the config file ${file}: it is not a JSON profile file; not overwritten`);
  }
  if (current !== undefined) checkConfig(current, file);
  writeFileAtomic(file, `${JSON.stringify(config, null, 2)}\n`);
}

export interface ResolvedProfile {
  name: string;
  /** True when --profile / COFFER_PROFILE / default_profile named it. */
  explicit: boolean;
  settings: Profile;
  tokenFile: string;
}

/** --profile, then COFFER_PROFILE (commander folds both), then default_profile, then "default". */
export function resolveProfile(config: ConfigFile, requested: string | undefined, allowMissing = false): ResolvedProfile {
  const name = checkProfileName(requested ?? config.default_profile ?? DEFAULT_PROFILE);
  const settings = config.profiles?.[name];
  const explicit = requested !== undefined || config.default_profile !== undefined;
  if (!settings && explicit && name !== DEFAULT_PROFILE && !allowMissing) {
    throw usageError(`no profile "${name}" in ${configFilePath()} (create it: coffer config set --profile ${name} address URL)`);
  }
  const s = settings ?? {};
  return { name, explicit, settings: s, tokenFile: s.token_file ? expandPath(s.token_file) : defaultTokenFile(name) };
}

/**
 * A credential file's content, or undefined when it does not exist. A file
 * group or others can access is refused: the credential may already be
 * compromised, and using it quietly would hide that.
 */
export function readPrivateFile(file: string, what: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read the ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    // fstat on the opened descriptor: the file checked is the file read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new CliError(`the ${what} ${file} is not a regular file`);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new CliError(`the ${what} ${file} is accessible to other users (mode ${mode}); run: chmod 600 ${file}`);
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

export function readTokenFile(file: string): string | undefined {
  return readPrivateFile(file, 'token file')?.trim() || undefined;
}

/**
 * Writes `content` to `file` with mode 0600: into a new temporary file in the
 * same directory (created 0600, never wider for a moment), fsynced, then renamed
 * over the old one, so readers see the old or the new file, never half of one.
 * Missing directories are created 0700.
 */
export function writeFileAtomic(file: string, content: string | Uint8Array): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new CliError(`cannot write ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  // The directory entry too, so a crash right after does not bring back the old file.
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  }
}

export function writeTokenFile(file: string, token: string): void {
  writeFileAtomic(file, `${token}\n`);
}

/** Removes a token file; false when there was none. */
export function removeFile(file: string): boolean {
  try {
    unlinkSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new CliError(`cannot remove ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
