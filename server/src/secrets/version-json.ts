/** A secret version's read as UTF-8 JSON, without a parse and a second stringify of its data. */

/** The opening of a version's JSON up to its path, as `versionJson` takes it. */
export const namespaceHead = (namespace: string) => `{"namespace":${JSON.stringify(namespace)},"path":`;

/**
 * `created_at.toISOString()` of versions being read, remembered by their time: a hot read asks for
 * the same few timestamps over and over, and V8's toISOString was half of a read's own work here.
 * The text depends on the time alone; the map starts over when full.
 */
const createdIsos = new Map<number, string>();
export function createdIso(d: Date): string {
  const time = d.getTime();
  let text = createdIsos.get(time);
  if (text === undefined) {
    text = d.toISOString(); // throws for an invalid date, before anything is remembered
    if (createdIsos.size >= 1024) createdIsos.clear();
    createdIsos.set(time, text);
  }
  return text;
}

/**
 * A version as UTF-8 JSON, key order as in the secret service's `view` and BulkPage: the text equals
 * JSON.stringify of what `view` builds, because `plaintext` is the JSON text `write` made of the
 * data. `head` opens it up to the path (`{"namespace":…,"path":`). A new buffer; `plaintext` is
 * the caller's to zero.
 */
export function versionJson(
  head: string,
  path: string,
  row: { version: number; type: string; metadata: Record<string, string>; created_at: Date },
  plaintext: Uint8Array,
): Buffer {
  const before = Buffer.from(`${head}${JSON.stringify(path)},"version":${row.version},"type":${JSON.stringify(row.type)},"data":`);
  const after = Buffer.from(`,"metadata":${JSON.stringify(row.metadata)},"created_at":"${createdIso(row.created_at)}"}`);
  return Buffer.concat([before, plaintext, after]);
}
