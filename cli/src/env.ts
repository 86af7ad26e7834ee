/**
 * Secrets as environment variables, for `coffer run` and `coffer export`: the
 * name mapping, coffer:// reference resolution and the dotenv format. No error
 * message here repeats a value: names, paths and line numbers only.
 */
import { readFile } from 'node:fs/promises';
import { CofferError, isSecretRef, normalizeFolder, parseSecretRef, type CofferClient, type SecretRef, type SecretVersion } from '@coffer/sdk';
import { CliError, EXIT, exitCodeFor, usageError } from './errors.js';

/** Shown in --help of both commands. */
export const MAPPING_HELP = `
Environment variable names:
  For each secret at path P (relative to --prefix) and each field F of its data:
  the name is P when the secret has exactly one field, otherwise P_F. It is then
  uppercased, every character other than A-Z, 0-9 and _ becomes _, and a leading
  digit gets a _ prefix:
    db/password  {password}    ->  DB_PASSWORD
    db           {user, pass}  ->  DB_USER, DB_PASS
    api-keys/2fa {seed}        ->  API_KEYS_2FA
  Two secrets mapping to the same name is an error (nothing is guessed).
`;

/** The env var name for a secret path and field (see MAPPING_HELP). */
export function envName(relativePath: string, field: string | undefined): string {
  const raw = field === undefined ? relativePath : `${relativePath}_${field}`;
  const name = raw.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/** Where a variable's value came from, for collision errors. */
type Origin = string;

export interface FolderEnv {
  env: Map<string, string>;
  /** Paths under the folder the token may list but not read: their variables are missing from `env`. */
  withheld: string[];
}

/** `ns:folder/` (`ns:/` for the root), as messages name a folder. */
export const folderLabel = (namespace: string, folder: string) => `${namespace}:${folder || '/'}`;

/**
 * Every latest value under `folder`, in one bulk read (the SDK follows pages),
 * as env vars in a stable order (by path, then field), and what was withheld.
 * Unless `allowPartial`, a withheld secret fails the whole read (exit 3): an
 * app started without a variable it expects fails later and further from the cause.
 * A folder with nothing this token can see is a 404 from the server (exit 4).
 */
export async function fetchFolderEnv(
  client: CofferClient,
  namespace: string,
  folder: string,
  options: { allowPartial: boolean },
): Promise<FolderEnv> {
  const prefix = normalizeFolder(folder);
  let result;
  try {
    result = await client.secrets.bulk(namespace, prefix);
  } catch (err) {
    if (err instanceof CofferError && err.code === 'not_found') {
      throw new CliError(`${err.message}; check --ns and --prefix (\`coffer secret list\` shows what this token can see)`, EXIT.notFound, 'not_found', {
        cause: err,
      });
    }
    throw err;
  }
  const { secrets, withheld } = result;
  if (withheld.length > 0) {
    const names = withheld.join(', ');
    if (!options.allowPartial) {
      throw new CliError(
        `this token may list but not read ${withheld.length} secret(s) under ${folderLabel(namespace, prefix)}: ${names}; ` +
          'nothing was injected (grant read, narrow --prefix, or pass --allow-partial to go on without them)',
        EXIT.denied,
        'permission_denied',
      );
    }
    process.stderr.write(`Warning: skipped ${withheld.length} secret(s) under ${folderLabel(namespace, prefix)} this token may not read: ${names}\n`);
  }
  return { env: mapSecrets(secrets, prefix), withheld };
}

export function mapSecrets(secrets: SecretVersion[], prefix: string): Map<string, string> {
  const env = new Map<string, string>();
  const origins = new Map<string, Origin>();
  const sorted = [...secrets].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const secret of sorted) {
    const relative = secret.path.startsWith(prefix) ? secret.path.slice(prefix.length) : secret.path;
    const fieldNames = Object.keys(secret.data).sort();
    for (const field of fieldNames) {
      const name = envName(relative, fieldNames.length === 1 ? undefined : field);
      const origin = `${secret.path}#${field}`;
      const earlier = origins.get(name);
      if (earlier !== undefined) {
        throw new CliError(
          `environment variable ${name} would come from both ${earlier} and ${origin} (in ${secret.namespace}); ` +
            'rename one of the secrets or narrow --prefix',
          EXIT.error,
          'name_collision',
        );
      }
      origins.set(name, origin);
      env.set(name, secret.data[field]!);
    }
  }
  return env;
}

/**
 * dotenv: KEY=VALUE lines; blank lines and # comments are skipped; an `export `
 * prefix is allowed; values may be 'single-quoted' (literal), "double-quoted"
 * (\n \r \t \\ \" escapes, may span lines) or bare (trimmed, a " #" starts a comment).
 */
export function parseDotenv(text: string, source: string): Map<string, string> {
  const env = new Map<string, string>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$/.exec(line);
    // The line is not echoed: it may hold a value.
    if (!match) throw usageError(`${source} line ${lineNo}: expected KEY=VALUE`);
    const key = match[1]!;
    let rest = match[2]!;
    let value: string;
    if (rest.startsWith('"') || rest.startsWith("'")) {
      const quote = rest[0]!;
      rest = rest.slice(1);
      // A quoted value may continue on the following lines until its closing quote.
      let body = '';
      let closed = false;
      let after = '';
      for (;;) {
        let j = 0;
        while (j < rest.length) {
          const ch = rest[j]!;
          if (quote === '"' && ch === '\\' && j + 1 < rest.length) {
            const next = rest[j + 1]!;
            body += next === 'n' ? '\n' : next === 'r' ? '\r' : next === 't' ? '\t' : next === '\\' || next === '"' || next === '$' ? next : `\\${next}`;
            j += 2;
            continue;
          }
          if (ch === quote) {
            closed = true;
            after = rest.slice(j + 1).trim();
            break;
          }
          body += ch;
          j++;
        }
        if (closed) break;
        if (i + 1 >= lines.length) throw usageError(`${source} line ${lineNo}: unterminated quoted value of ${key}`);
        body += '\n';
        rest = lines[++i]!;
      }
      if (after !== '' && !after.startsWith('#')) throw usageError(`${source} line ${lineNo}: unexpected text after the quoted value of ${key}`);
      value = body;
    } else {
      const comment = rest.search(/\s#/);
      value = (comment === -1 ? rest : rest.slice(0, comment)).trim();
    }
    env.set(key, value);
  }
  return env;
}

export async function readEnvFile(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read the env file ${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  return parseDotenv(text, file);
}

/**
 * Replaces every value of `env` that is exactly a coffer:// reference with the
 * value it names. Each distinct (namespace, path, version) is read once; the
 * reads run in parallel. A failed read fails the whole resolution.
 */
export async function resolveRefs(client: CofferClient, env: Map<string, string>, names: Iterable<string>): Promise<Map<string, string>> {
  const resolved = new Map<string, string>();
  const refs = new Map<string, { ref: SecretRef; raw: string }>();
  for (const name of names) {
    const value = env.get(name);
    if (value === undefined || !isSecretRef(value)) continue;
    let ref: SecretRef;
    try {
      ref = parseSecretRef(value);
    } catch (err) {
      throw usageError(`${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
    refs.set(name, { ref, raw: value });
  }
  if (refs.size === 0) return resolved;

  const key = (r: SecretRef) => `${r.namespace}\u0000${r.path}\u0000${r.version ?? ''}`;
  const reads = new Map<string, Promise<SecretVersion>>();
  for (const { ref } of refs.values()) {
    const k = key(ref);
    if (!reads.has(k)) {
      const read = client.secrets.get(ref.namespace, ref.path, { version: ref.version });
      read.catch(() => {}); // awaited below; avoids an unhandled rejection while another read is awaited
      reads.set(k, read);
    }
  }

  for (const [name, { ref, raw }] of refs) {
    let secret: SecretVersion;
    try {
      secret = await reads.get(key(ref))!;
    } catch (err) {
      if (err instanceof CofferError) {
        throw new CliError(`${name}: cannot read ${raw}: ${err.message}`, exitCodeFor(err), err.code, { cause: err });
      }
      throw err;
    }
    const fieldNames = Object.keys(secret.data);
    let value: string | undefined;
    if (ref.field !== undefined) {
      value = secret.data[ref.field];
      if (value === undefined) {
        throw new CliError(`${name}: ${raw} (version ${secret.version}) has no field "${ref.field}" (fields: ${fieldNames.join(', ')})`, EXIT.notFound, 'not_found');
      }
    } else if (fieldNames.length === 1) {
      value = secret.data[fieldNames[0]!]!;
    } else {
      throw new CliError(
        `${name}: ${raw} has ${fieldNames.length} fields (${fieldNames.join(', ')}); name one with #field`,
        EXIT.usage,
        'ambiguous_reference',
      );
    }
    env.set(name, value);
    resolved.set(raw, value);
  }
  return resolved;
}

/** resolveRefs from a saved map of reference → value (the fallback copy), without a server. */
export function resolveRefsOffline(env: Map<string, string>, names: Iterable<string>, saved: Record<string, string>): void {
  for (const name of names) {
    const value = env.get(name);
    if (value === undefined || !isSecretRef(value)) continue;
    const resolvedValue = Object.hasOwn(saved, value) ? saved[value] : undefined;
    if (resolvedValue === undefined) throw new CliError(`${name}: ${value} is not in the fallback copy (it was not used by the last good fetch)`, EXIT.unavailable);
    env.set(name, resolvedValue);
  }
}
