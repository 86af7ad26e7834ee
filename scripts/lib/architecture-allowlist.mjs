// The offences against the layers and the SQL rule that exist today (scripts/lib/architecture.mjs
// explains both checks). Each names the step of issue 11 ("One house") that removes it; when a
// step lands, delete its entries — the check reports entries that no longer match.
// Anything not listed here fails `npm test`.

/** Imports against the direction: { from, to } below server/src, and why they are still here. */
export const layers = [
];

/** Files outside server/src/storage/ that write SQL. Removed by: SQL into storage/repos. */
export const sql = [
];
