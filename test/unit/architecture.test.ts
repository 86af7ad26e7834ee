// The layering and SQL-placement rules of server/src (DESIGN.md "Layers"), checked on every
// `npm test`: an import against the direction, or SQL outside storage/, that is not one of
// today's known offences (scripts/lib/architecture-allowlist.mjs) fails here, listed.
import { fileURLToPath } from 'node:url';
import * as allow from '#lib/architecture-allowlist.mjs';
import { checkArchitecture, formatReport, importsOf, layerOf, layerViolations, readSources, sealNameChecks, sqlIn, type Source } from '#lib/architecture.mjs';

const SERVER_SRC = fileURLToPath(new URL('../../../server/src', import.meta.url));
const CONTRACT_SRC = fileURLToPath(new URL('../../../sdk/src/api', import.meta.url));

describe('server/src architecture', () => {
  const sources = readSources(SERVER_SRC);
  const result = checkArchitecture(sources, allow);

  it('reads the real source tree', () => {
    expect(sources.map((s) => s.file)).toEqual(expect.arrayContaining(['core.ts', 'http/app.ts', 'storage/db.ts', 'secrets/names.ts']));
  });

  it('has no import against the layers beyond the known ones', () => {
    if (result.staleLayer.length + result.staleSql.length > 0) console.warn(formatReport(result));
    expect({ newImports: result.newLayer, report: result.newLayer.length ? formatReport(result) : '' }).toEqual({ newImports: [], report: '' });
  });

  it('writes SQL only under storage/ beyond the known files', () => {
    expect({ newFiles: result.newSql.map((e) => e.file), report: result.newSql.length ? formatReport(result) : '' }).toEqual({ newFiles: [], report: '' });
  });

  it('places every file in a layer', () => {
    expect(sources.filter((s) => layerOf(s.file) === null).map((s) => s.file)).toEqual([]);
  });

  it('the seal ceremonies ask a seal for its capabilities, never for its name or class', () => {
    expect(sealNameChecks(sources)).toEqual([]);
  });
});

describe('the wire contract (sdk/src/api)', () => {
  it('imports nothing but itself: no package, no client code', () => {
    const sources = readSources(CONTRACT_SRC);
    expect(sources.length).toBeGreaterThan(0);
    const outside = sources.flatMap(({ file, text }) => importsOf(text).filter((spec) => !spec.startsWith('./')).map((spec) => `${file} -> ${spec}`));
    expect(outside).toEqual([]);
  });
});

describe('the layering check', () => {
  const src = (file: string, text: string): Source => ({ file, text });

  it('reports an import that runs upwards, with both ends', () => {
    const found = layerViolations([src('audit/x.ts', "import { y } from '../http/y.js';\nexport const x = y;")]);
    expect(found).toEqual([{ from: 'audit/x.ts', to: 'http/y.ts', why: 'service may not import http' }]);
  });

  it('counts type-only imports, re-exports and dynamic imports', () => {
    const found = layerViolations([
      src('storage/a.ts', "import type { S } from '../secrets/s.js';"),
      src('storage/b.ts', "export { K } from '../keyring/k.js';"),
      src('storage/c.ts', "const m = await import('../auth/t.js');"),
    ]);
    expect(found.map((v) => `${v.from} -> ${v.to}`)).toEqual(['storage/a.ts -> secrets/s.ts', 'storage/b.ts -> keyring/k.ts', 'storage/c.ts -> auth/t.ts']);
  });

  it('lets imports run downwards and the whole server use the wire contract', () => {
    const found = layerViolations([
      src('http/routes/x.ts', "import type { CofferCore } from '../../core.js';\nimport { isAllowed } from '../../policy/policy.js';"),
      src('secrets/x.ts', "import { sql } from 'kysely';\nimport { seal } from '../keyring/aead.js';\nimport type { Database } from '../storage/schema.js';"),
      src('storage/x.ts', "import type { SecretType } from '@coffer/sdk/api';"),
      src('main.ts', "import { loadConfig } from './config.js';"),
    ]);
    expect(found).toEqual([]);
  });

  it('keeps config.ts to main/server/compose, and the SDK client out of the server', () => {
    const found = layerViolations([
      src('secrets/x.ts', "import type { Config } from '../config.js';"),
      src('config.ts', "import type { TokenLimits } from './auth/tokens.js';"),
      src('http/x.ts', "import { CofferClient } from '@coffer/sdk';"),
    ]);
    expect(found.map((v) => v.why)).toEqual([
      'config.ts is imported by main/server/compose only',
      'config may not import service',
      'the server imports the SDK only as @coffer/sdk/api',
    ]);
  });

  it('keeps the composition root to main/server and the secret store away from the KMS services', () => {
    const found = layerViolations([
      src('http/x.ts', "import { compose } from '../app/compose.js';"),
      src('server.ts', "import { compose } from './app/compose.js';"),
      src('secrets/x.ts', "import { Shredder } from '../kms/shred.js';"),
      src('kms/x.ts', "import { names } from '../secrets/names.js';"),
    ]);
    expect(found.map((v) => `${v.from} -> ${v.to}`)).toEqual(['http/x.ts -> app/compose.ts', 'secrets/x.ts -> kms/shred.ts']);
  });

  it('finds a ceremony that branches on a seal\'s name or class', () => {
    const found = sealNameChecks([
      src('vault/x.ts', "const a = 1;\nif (seal.type === 'pkcs11') go();"),
      src('vault/y.ts', 'if (root instanceof Pkcs11RootKey) go();'),
      src('seal/z.ts', "if (type === 'shamir') go();"),
    ]);
    expect(found).toEqual([{ file: 'vault/x.ts', line: 2 }, { file: 'vault/y.ts', line: 1 }]);
  });

  it('reports a file in no layer', () => {
    expect(layerViolations([src('widgets/x.ts', '')])).toEqual([expect.objectContaining({ from: 'widgets/x.ts', to: '-' })]);
  });

  it('marks what is new and what is no longer there against an allowlist', () => {
    const sources = [src('audit/x.ts', "import '../http/y.js';\nimport '../http/z.js';"), src('secrets/q.ts', "db.selectFrom('t')")];
    const checked = checkArchitecture(sources, { layers: [{ from: 'audit/x.ts', to: 'http/y.ts' }, { from: 'seal/a.ts', to: 'keyring/b.ts' }], sql: [{ file: 'auth/gone.ts' }] });
    expect(checked.newLayer.map((v) => v.to)).toEqual(['http/z.ts']);
    expect(checked.staleLayer).toEqual([{ from: 'seal/a.ts', to: 'keyring/b.ts' }]);
    expect(checked.newSql.map((e) => e.file)).toEqual(['secrets/q.ts']);
    expect(checked.staleSql).toEqual([{ file: 'auth/gone.ts' }]);
    expect(formatReport(checked)).toContain('NEW server/src/audit/x.ts -> server/src/http/z.ts');
  });
});

describe('the SQL check', () => {
  it('finds the sql tag (with or without type arguments), the query builders and raw query text', () => {
    const text = [
      "import { sql } from 'kysely';",
      'const a = await sql`select 1`.execute(db);',
      'const b = sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(${k})`;',
      "const c = await db.selectFrom('secrets').selectAll().execute();",
      "await trx.insertInto('t').values(v).execute();",
      "await pool.query('update namespace_keys set n = n + 1 where id = $1', [id]);",
      'const d = sql.raw(text);',
    ].join('\n');
    expect(sqlIn(text).map((f) => `${f.line}: ${f.what}`)).toEqual([
      '2: sql`…` (kysely raw SQL)',
      '3: sql`…` (kysely raw SQL)',
      '3: query text "select pg_try_advisory_xact_lock("',
      '4: .selectFrom(…)',
      '5: .insertInto(…)',
      '6: query text "update namespace_keys set n = n + 1 wher"',
      '7: sql.raw',
    ]);
  });

  it('leaves prose, comments, regular expressions and other calls alone', () => {
    const text = [
      '// insert into secrets (this is a comment) and db.selectFrom(x)',
      "throw badRequest('give a share or update the request; select the namespace');",
      'const re = /select .* from x/;',
      'const selectFrom = 1; const x = { insertInto: 2 };',
      'const t = `${a}/${b}`;',
    ].join('\n');
    expect(sqlIn(text)).toEqual([]);
  });
});
