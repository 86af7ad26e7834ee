// The offences against the layers and the SQL rule that exist today (scripts/lib/architecture.mjs
// explains both checks). Each names the step of issue 11 ("One house") that removes it; when a
// step lands, delete its entries — the check reports entries that no longer match.
// Anything not listed here fails `npm test`.

/** Imports against the direction: { from, to } below server/src, and why they are still here. */
export const layers = [
];

/** Files outside server/src/storage/ that write SQL. Removed by: SQL into storage/repos. */
export const sql = [
  { file: 'audit/intents.ts', step: 'SQL into storage/repos' },
  { file: 'audit/reader.ts', step: 'SQL into storage/repos' },
  { file: 'audit/writer.ts', step: 'SQL into storage/repos' },
  { file: 'auth/approle.ts', step: 'SQL into storage/repos' },
  { file: 'auth/cert.ts', step: 'SQL into storage/repos' },
  { file: 'auth/jwt.ts', step: 'SQL into storage/repos' },
  { file: 'auth/policy-store.ts', step: 'SQL into storage/repos' },
  { file: 'auth/tokens.ts', step: 'SQL into storage/repos' },
  { file: 'auth/userpass.ts', step: 'SQL into storage/repos' },
];
