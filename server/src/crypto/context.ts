/**
 * Associated data (AAD) for every wrap and encryption. Each names what the
 * ciphertext is and where it belongs, so a ciphertext copied to another row,
 * namespace, secret or version fails to decrypt instead of yielding the wrong
 * plaintext. Encoded as a JSON array: unambiguous, whatever the names contain.
 */
const encoder = new TextEncoder();
const encode = (parts: Array<string | number>) => encoder.encode(JSON.stringify(['coffer/v1', ...parts]));

/**
 * The JSON text of `['coffer/v1', ...head, ...tail]` for many tails under one head: what `encode`
 * gives, byte for byte (a JSON array is its elements' JSON joined by commas), without
 * re-stringifying the head for each row of a bulk read.
 */
function encoderWithHead(head: Array<string | number>): (tail: Array<string | number>) => Uint8Array {
  const prefix = JSON.stringify(['coffer/v1', ...head]).slice(0, -1);
  return (tail) => {
    let text = prefix;
    for (const part of tail) text += ',' + JSON.stringify(part);
    return encoder.encode(text + ']');
  };
}

/** AADs of many secret versions of one namespace (bulk reads): equal to `aad.dek` and `aad.secretValue`. */
export function namespaceAads(namespaceId: string) {
  const dek = encoderWithHead(['dek', namespaceId]);
  const value = encoderWithHead(['secret-value', namespaceId]);
  return {
    dek: (secretId: string, version: number, kekVersion: number) => dek([secretId, version, kekVersion]),
    secretValue: (secretId: string, version: number) => value([secretId, version]),
  };
}

export const aad = {
  /** The fixed check value proving that a reconstructed root key is the right one. */
  rootCheck: (rootVersion: number) => encode(['root-check', rootVersion]),
  /** A namespace KEK version wrapped by a root key version. */
  kek: (namespaceId: string, kekVersion: number, rootVersion: number) =>
    encode(['kek', namespaceId, kekVersion, rootVersion]),
  /** A backup's content digest (SHA-256), sealed by the root key so that only a holder of the root key can make one. */
  backupDigest: (createdAt: string, rootVersion: number) => encode(['backup-digest', createdAt, rootVersion]),
  /** A server-internal key (e.g. token signing) wrapped by a root key version. */
  systemKey: (name: string, version: number, rootVersion: number) =>
    encode(['system-key', name, version, rootVersion]),
  /** The DEK of one secret version, wrapped by a KEK version. */
  dek: (namespaceId: string, secretId: string, version: number, kekVersion: number) =>
    encode(['dek', namespaceId, secretId, version, kekVersion]),
  /** The value of one secret version, encrypted by its DEK. */
  secretValue: (namespaceId: string, secretId: string, version: number) =>
    encode(['secret-value', namespaceId, secretId, version]),
  /** One version of a named key's material (kms/named-keys), wrapped by a KEK version. */
  kmsKey: (namespaceId: string, keyId: string, name: string, type: string, version: number, kekVersion: number) =>
    encode(['kms-key', namespaceId, keyId, name, type, version, kekVersion]),
  /**
   * Data an application encrypted with a named key version; `associated` is the
   * caller's own associated data (base64 inside the JSON, so any bytes fit).
   */
  kmsData: (keyId: string, version: number, associated: Uint8Array) =>
    encoder.encode(`${kmsDataHead(keyId, version)}"${Buffer.from(associated.buffer, associated.byteOffset, associated.byteLength).toString('base64')}"]`),
};

// aad.kmsData is built on every KMS encrypt and decrypt: the JSON of its head (all but the
// associated data, whose base64 needs no escaping) is remembered per key version, as `encode`
// would write it. Ids are not secret; a full map is simply emptied.
const kmsHeads = new Map<string, string>();
function kmsDataHead(keyId: string, version: number): string {
  const id = `${keyId}:${version}`;
  let head = kmsHeads.get(id);
  if (head === undefined) {
    head = JSON.stringify(['coffer/v1', 'kms-data', keyId, version, '']).slice(0, -3);
    if (kmsHeads.size >= 4096) kmsHeads.clear();
    kmsHeads.set(id, head);
  }
  return head;
}
