// Two checks of server/src that `npm test` runs (test/unit/architecture.test.ts), also from the
// command line: node scripts/check-architecture.mjs
//
//  * Layers (docs: DESIGN.md "Layers"): imports run one way,
//      entry (main, server, app/compose, ops listeners) → http → vault/core → services
//      (auth, policy, secrets, keys/kms, audit, jobs, cluster) → keyring → seal → crypto → storage,
//    config.ts is imported by main/server/compose only and imports nothing of the server,
//    storage imports nothing above it, and the server reaches the SDK only through its wire
//    contract (@coffer/sdk/api).
//  * SQL (kysely's `sql` tag, selectFrom/insertInto/updateTable/deleteFrom, raw query text) is
//    written under storage/ only.
//
// Both report every offence; the known ones of today are listed in scripts/lib/architecture-allowlist.mjs,
// each with the step of issue 11 that removes it, so the checks pass now and fail on a new one.
// Unlike the other helpers in scripts/lib this one needs `typescript` (a devDependency): it
// reads the sources with TypeScript's own preprocessor and scanner, not with regexes.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const ts = createRequire(import.meta.url)('typescript');

/** Layers, by path below server/src; the first match wins. */
const LAYERS = [
  ['entry', /^(main|server|log)\.ts$|^app\/|^ops\/(listeners|tls)\.ts$/],
  ['config', /^config\.ts$/],
  ['http', /^http\/|^ops\/metrics\.ts$/],
  ['vault', /^core\.ts$|^vault\//],
  ['service', /^(auth|policy|secrets|keys|kms|audit|jobs|cluster)\//],
  ['keyring', /^keyring\//],
  ['seal', /^seal\//],
  ['crypto', /^crypto\//],
  ['storage', /^storage\//],
  ['shared', /^errors\.ts$/],
];

/** Which layers each layer may import (besides itself). */
const MAY_IMPORT = {
  entry: ['config', 'http', 'vault', 'service', 'keyring', 'seal', 'crypto', 'storage', 'shared'],
  config: ['shared'],
  http: ['vault', 'service', 'shared'],
  vault: ['service', 'keyring', 'seal', 'crypto', 'storage', 'shared'],
  service: ['keyring', 'seal', 'crypto', 'storage', 'shared'],
  keyring: ['seal', 'crypto', 'storage', 'shared'],
  seal: ['crypto', 'storage', 'shared'],
  crypto: ['shared'],
  storage: [],
  shared: [],
};

/** The only files that may import config.ts. */
const CONFIG_IMPORTERS = new Set(['main.ts', 'server.ts', 'app/compose.ts']);
const ENTRY_POINTS = new Set(['main.ts', 'server.ts']);

/**
 * Services of one layer that must still not know each other: [from, to, why]. The secret
 * store reaches the KMS only through the keyring, so shredding or a KMS key service can
 * change without touching how secrets are read and written.
 */
const SERVICES_APART = [['secrets', 'kms', 'secrets use keys through keyring/, never the KMS services']];

/**
 * The seal ceremonies (vault/, core.ts) ask a seal for its capabilities, never for its
 * name or class (OpenBao's RecoveryKeySupported()): [{ file, line }] where one does.
 */
export function sealNameChecks(sources) {
  const pattern = /(===|!==)\s*'(pkcs11|shamir)'|'(pkcs11|shamir)'\s*(===|!==)|instanceof\s+(Pkcs11RootKey|InMemoryRootKey|Pkcs11Seal|ShamirSeal)/;
  return sources
    .filter(({ file }) => file.startsWith('vault/') || file === 'core.ts')
    .flatMap(({ file, text }) => text.split('\n').flatMap((line, i) => (pattern.test(line) ? [{ file, line: i + 1 }] : [])));
}

/** The server's one way into the SDK workspace: the wire contract. */
const CONTRACT = '@coffer/sdk/api';

export function layerOf(file) {
  return LAYERS.find(([, pattern]) => pattern.test(file))?.[0] ?? null;
}

/** Every .ts file below `srcDir`: { file (relative, '/'-separated), text }. */
export function readSources(srcDir) {
  return readdirSync(srcDir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => ({ file: f.split(path.sep).join('/'), text: readFileSync(path.join(srcDir, f), 'utf8') }));
}

/** The module specifiers of a file: static imports and re-exports (type-only included) and import(). */
export function importsOf(text) {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** `spec` imported from `from`, as a path below src ('../x.js' → 'x.ts'), or null for a package. */
function resolveRelative(from, spec) {
  if (!spec.startsWith('.')) return null;
  return path.posix.normalize(path.posix.join(path.posix.dirname(from), spec)).replace(/\.js$/, '.ts');
}

/**
 * Imports that run against the layers: [{ from, to, why }] (`to` is a path below src or a
 * package name). Files in no layer are reported too: a new directory must be placed.
 */
export function layerViolations(sources) {
  const found = [];
  for (const { file, text } of sources) {
    const layer = layerOf(file);
    if (!layer) {
      found.push({ from: file, to: '-', why: 'file is in no layer: add its directory to LAYERS in scripts/lib/architecture.mjs' });
      continue;
    }
    for (const spec of importsOf(text)) {
      const target = resolveRelative(file, spec);
      if (target === null) {
        if (spec.startsWith('@coffer/') && spec !== CONTRACT) found.push({ from: file, to: spec, why: `the server imports the SDK only as ${CONTRACT}` });
        continue;
      }
      if (target === 'config.ts' && !CONFIG_IMPORTERS.has(file)) {
        found.push({ from: file, to: target, why: 'config.ts is imported by main/server/compose only' });
        continue;
      }
      if (target.startsWith('app/') && !file.startsWith('app/') && !ENTRY_POINTS.has(file)) {
        found.push({ from: file, to: target, why: 'only main/server import the composition root (app/)' });
        continue;
      }
      const apart = SERVICES_APART.find(([a, b]) => file.startsWith(`${a}/`) && target.startsWith(`${b}/`));
      if (apart) {
        found.push({ from: file, to: target, why: `${apart[0]}/ may not import ${apart[1]}/ (${apart[2]})` });
        continue;
      }
      const targetLayer = layerOf(target);
      if (targetLayer === null || targetLayer === layer || MAY_IMPORT[layer].includes(targetLayer)) continue;
      found.push({ from: file, to: target, why: `${layer} may not import ${targetLayer}` });
    }
  }
  return found;
}

const QUERY_BUILDERS = new Set(['selectFrom', 'insertInto', 'updateTable', 'deleteFrom', 'replaceInto', 'mergeInto']);
/** Text of a string or template that is a query (or part of one), not prose. */
const RAW_SQL =
  /^\s*(select\s[\s\S]*\bfrom\s|insert\s+into\s|update\s+\w+\s+set\s|delete\s+from\s|with\s+\w+\s+as\s*\(|(create|alter|drop)\s+(table|index|database|schema)\s|lock\s+table\s|listen\s|unlisten\s|notify\s|set\s+local\s)|\bpg_(advisory|try_advisory|notify)\w*\s*\(/i;

/** After these tokens a `/` starts a regular expression, not a division. */
const BEFORE_REGEX = new Set([
  ts.SyntaxKind.OpenParenToken, ts.SyntaxKind.CommaToken, ts.SyntaxKind.EqualsToken, ts.SyntaxKind.ColonToken,
  ts.SyntaxKind.OpenBracketToken, ts.SyntaxKind.ExclamationToken, ts.SyntaxKind.AmpersandAmpersandToken,
  ts.SyntaxKind.BarBarToken, ts.SyntaxKind.QuestionQuestionToken, ts.SyntaxKind.QuestionToken,
  ts.SyntaxKind.OpenBraceToken, ts.SyntaxKind.CloseBraceToken, ts.SyntaxKind.SemicolonToken,
  ts.SyntaxKind.ReturnKeyword, ts.SyntaxKind.EqualsGreaterThanToken,
]);

/** The tokens of a file (comments skipped), with template literals and regular expressions read as such. */
function tokensOf(text) {
  const scanner = ts.createScanner(ts.ScriptTarget.Latest, true, ts.LanguageVariant.Standard, text);
  const tokens = [];
  // What each open `{` or `${` closes: a block/object, or a template substitution.
  const open = [];
  for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
    if (kind === ts.SyntaxKind.CloseBraceToken && open.at(-1) === 'template') {
      kind = scanner.reScanTemplateToken(false);
      if (kind === ts.SyntaxKind.TemplateTail) open.pop();
    } else if (kind === ts.SyntaxKind.CloseBraceToken) open.pop();
    else if (kind === ts.SyntaxKind.OpenBraceToken) open.push('brace');
    else if (kind === ts.SyntaxKind.TemplateHead) open.push('template');
    else if ((kind === ts.SyntaxKind.SlashToken || kind === ts.SyntaxKind.SlashEqualsToken) && (tokens.length === 0 || BEFORE_REGEX.has(tokens.at(-1).kind))) {
      kind = scanner.reScanSlashToken();
    }
    tokens.push({ kind, text: scanner.getTokenText(), value: scanner.getTokenValue(), pos: scanner.getTokenStart() });
  }
  return tokens;
}

/** SQL written in one file: [{ line, what }]. */
export function sqlIn(text) {
  const tokens = tokensOf(text);
  const lineOf = (pos) => text.slice(0, pos).split('\n').length;
  const found = [];
  tokens.forEach((t, i) => {
    const next = tokens[i + 1];
    const previous = tokens[i - 1];
    if (t.kind === ts.SyntaxKind.Identifier && t.text === 'sql' && next) {
      // sql`…` or sql<T>`…`: skip the type arguments.
      let j = i + 1;
      if (tokens[j].kind === ts.SyntaxKind.LessThanToken) {
        for (let depth = 0; j < tokens.length; j++) {
          if (tokens[j].kind === ts.SyntaxKind.LessThanToken) depth++;
          else if (tokens[j].kind === ts.SyntaxKind.GreaterThanToken && --depth === 0) break;
        }
        j++;
      }
      const after = tokens[j];
      if (after && (after.kind === ts.SyntaxKind.NoSubstitutionTemplateLiteral || after.kind === ts.SyntaxKind.TemplateHead)) {
        found.push({ line: lineOf(t.pos), what: 'sql`…` (kysely raw SQL)' });
      } else if (next.kind === ts.SyntaxKind.DotToken && tokens[i + 2]?.kind === ts.SyntaxKind.Identifier) {
        found.push({ line: lineOf(t.pos), what: `sql.${tokens[i + 2].text}` });
      }
    }
    if (t.kind === ts.SyntaxKind.Identifier && QUERY_BUILDERS.has(t.text) && previous?.kind === ts.SyntaxKind.DotToken && next?.kind === ts.SyntaxKind.OpenParenToken) {
      found.push({ line: lineOf(t.pos), what: `.${t.text}(…)` });
    }
    const literal = [ts.SyntaxKind.StringLiteral, ts.SyntaxKind.NoSubstitutionTemplateLiteral, ts.SyntaxKind.TemplateHead, ts.SyntaxKind.TemplateMiddle, ts.SyntaxKind.TemplateTail].includes(t.kind);
    if (literal && RAW_SQL.test(t.value)) found.push({ line: lineOf(t.pos), what: `query text ${JSON.stringify(t.value.trim().slice(0, 40))}` });
  });
  return found;
}

/** Files outside storage/ that write SQL: [{ file, lines: [{ line, what }] }]. */
export function sqlOutsideStorage(sources) {
  return sources
    .filter(({ file }) => !file.startsWith('storage/'))
    .map(({ file, text }) => ({ file, lines: sqlIn(text) }))
    .filter(({ lines }) => lines.length > 0);
}

/**
 * Both checks against the allowlists: `newLayer` and `newSql` are offences not listed (they fail
 * the check); `staleLayer` and `staleSql` are listed ones that are gone (remove them).
 */
export function checkArchitecture(sources, allow) {
  const key = (v) => `${v.from} -> ${v.to}`;
  const layer = layerViolations(sources);
  const allowedLayer = new Set(allow.layers.map(key));
  const seenLayer = new Set(layer.map(key));
  const sql = sqlOutsideStorage(sources);
  const allowedSql = new Set(allow.sql.map((e) => e.file));
  const seenSql = new Set(sql.map((e) => e.file));
  return {
    layer,
    sql,
    newLayer: layer.filter((v) => !allowedLayer.has(key(v))),
    newSql: sql.filter((e) => !allowedSql.has(e.file)),
    staleLayer: allow.layers.filter((e) => !seenLayer.has(key(e))),
    staleSql: allow.sql.filter((e) => !seenSql.has(e.file)),
  };
}

/** The report a person reads: every offence, the new ones marked. */
export function formatReport(result) {
  const lines = [];
  const newLayer = new Set(result.newLayer);
  const newSql = new Set(result.newSql);
  lines.push(`layers: ${result.layer.length} import(s) against the direction, ${result.newLayer.length} not in the allowlist`);
  for (const v of result.layer) lines.push(`  ${newLayer.has(v) ? 'NEW ' : '    '}server/src/${v.from} -> ${v.to.startsWith('@') ? v.to : `server/src/${v.to}`}  (${v.why})`);
  lines.push(`sql: ${result.sql.length} file(s) outside server/src/storage/ write SQL, ${result.newSql.length} not in the allowlist`);
  for (const e of result.sql) {
    const where = e.lines.slice(0, 4).map((l) => `${l.line}: ${l.what}`).join('; ');
    lines.push(`  ${newSql.has(e) ? 'NEW ' : '    '}server/src/${e.file}  (${e.lines.length}: ${where}${e.lines.length > 4 ? '; …' : ''})`);
  }
  for (const e of result.staleLayer) lines.push(`  allowlisted but gone (remove it from the allowlist): ${e.from} -> ${e.to}`);
  for (const e of result.staleSql) lines.push(`  allowlisted but gone (remove it from the allowlist): SQL in ${e.file}`);
  return lines.join('\n');
}
