// The customer's side of BYOK and escrow, done with node:crypto (and openssl, for the README).
import { constants, createCipheriv, createDecipheriv, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';

const KWP_IV = Buffer.from('A65959A6', 'hex');

export type WrapAlgorithm = 'RSAES_OAEP_SHA_256' | 'RSAES_OAEP_SHA_1' | 'RSA_AES_KEY_WRAP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_1';

/** Wraps `material` for import under the server's PEM public key, as AWS's algorithms of the same name do. */
export function wrapForImport(material: Buffer, publicKeyPem: string, algorithm: WrapAlgorithm): string {
  const oaepHash = algorithm.endsWith('SHA_256') ? 'sha256' : 'sha1';
  const rsa = (data: Buffer) => publicEncrypt({ key: publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, data);
  if (algorithm.startsWith('RSAES')) return rsa(material).toString('base64');
  const ephemeral = randomBytes(32);
  const cipher = createCipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
  return Buffer.concat([rsa(ephemeral), cipher.update(material), cipher.final()]).toString('base64');
}

export function escrowKeyPair(bits = 3072): { publicPem: string; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return { publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKey };
}

/** Opens an escrow download with the requester's private key. */
export function unwrapEscrow(wrappedB64: string, privateKey: KeyObject, algorithm: 'RSAES_OAEP_SHA_256' | 'RSA_AES_KEY_WRAP_SHA_256'): Buffer {
  const wrapped = Buffer.from(wrappedB64, 'base64');
  const bytes = (privateKey.asymmetricKeyDetails?.modulusLength ?? 3072) / 8;
  const rsa = (data: Buffer) => privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, data);
  if (algorithm === 'RSAES_OAEP_SHA_256') return rsa(wrapped);
  const ephemeral = rsa(wrapped.subarray(0, bytes));
  const decipher = createDecipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
  return Buffer.concat([decipher.update(wrapped.subarray(bytes)), decipher.final()]);
}
