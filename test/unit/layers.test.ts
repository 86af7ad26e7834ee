// The server's layers (DESIGN.md, "Layers"): data flows one way, HTTP → service →
// keyring → seal → crypto → storage. Each rule below names the folders a layer may not
// import; an import running the other way fails here, before it becomes a cycle.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../../server/src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every server/src module a file imports, as a path relative to server/src ("keyring/keyring.ts"). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+'(\.{1,2}\/[^']+)'/gm)].map((m) => m[1]!);
  return specifiers.map((s) => relative(SRC, resolve(dirname(file), s)).replace(/\.js$/, '.ts'));
}

const files = sources(SRC).map((f) => ({ path: relative(SRC, f), imports: importsOf(f) }));
const top = (path: string) => (path.includes('/') ? path.slice(0, path.indexOf('/')) : path);

/** [layer, what it must not import (top-level folders or files of server/src)] */
const RULES: Array<[string, string[]]> = [
  ['crypto', ['storage', 'seal', 'keyring', 'vault', 'kms', 'secrets', 'auth', 'audit', 'http', 'app', 'cluster', 'ops', 'core.ts', 'config.ts']],
  ['storage', ['crypto', 'seal', 'keyring', 'vault', 'kms', 'secrets', 'auth', 'audit', 'http', 'app', 'cluster', 'ops', 'core.ts']],
  ['seal', ['keyring', 'vault', 'kms', 'secrets', 'auth', 'audit', 'http', 'app', 'cluster', 'ops', 'core.ts']],
  ['keyring', ['vault', 'kms', 'secrets', 'auth', 'audit', 'http', 'app', 'cluster', 'ops', 'core.ts']],
  ['kms', ['vault', 'http', 'app', 'core.ts']],
  ['secrets', ['vault', 'kms', 'http', 'app', 'core.ts']],
  ['auth', ['vault', 'kms', 'http', 'app', 'core.ts']],
  // Audit entries take what a request was (its action and target) from the route table as data.
  ['audit', ['vault', 'kms', 'http', 'app', 'core.ts']],
  ['vault', ['http', 'app', 'core.ts']],
  ['cluster', ['vault', 'http', 'app', 'core.ts']],
];

/** Wire types every layer may name (they move to the SDK's contract, sdk/src/api). */
const ALLOWED = new Set(['vault/types.ts']);

describe('server layers', () => {
  it('finds the sources', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(files.some((f) => f.path === 'crypto/aead.ts')).toBe(true);
  });

  it.each(RULES)('%s/ imports nothing from %j', (layer, forbidden) => {
    const wrong = files
      .filter((f) => top(f.path) === layer)
      .flatMap((f) => f.imports.filter((i) => forbidden.includes(top(i)) && !ALLOWED.has(i)).map((i) => `${f.path} → ${i}`));
    expect(wrong).toEqual([]);
  });

  it('the seal ceremonies ask a seal for its capabilities, never for its name or class', () => {
    const wrong = files
      .filter((f) => top(f.path) === 'vault' || f.path === 'core.ts')
      .filter((f) => /(===|!==)\s*'(pkcs11|shamir)'|'(pkcs11|shamir)'\s*(===|!==)|instanceof\s+(Pkcs11RootKey|InMemoryRootKey|Pkcs11Seal|ShamirSeal)/.test(readFileSync(join(SRC, f.path), 'utf8')))
      .map((f) => f.path);
    expect(wrong).toEqual([]);
  });

  it('only the entry points import the composition root (app/)', () => {
    const wrong = files
      .filter((f) => !['main.ts', 'server.ts'].includes(f.path) && top(f.path) !== 'app')
      .flatMap((f) => f.imports.filter((i) => top(i) === 'app').map((i) => `${f.path} → ${i}`));
    expect(wrong).toEqual([]);
  });
});
