// HSM-resident ECDSA keys sign with CKM_ECDSA, which gives r ‖ s; the "asn1" marshaling the API
// promises is DER, so the server converts (kms/named-keys/hsm.ts derSignature). Checked against
// node:crypto over many signatures, so that r or s with a leading zero byte or a high bit (the
// cases a DER INTEGER encoder gets wrong) come up.
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { derSignature } from '@coffer/server/kms/named-keys/hsm';

describe('derSignature (ECDSA r ‖ s → DER)', () => {
  it.each(['P-256', 'P-384'] as const)('gives DER that node:crypto accepts, for %s', (namedCurve) => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
    const hash = namedCurve === 'P-256' ? 'sha256' : 'sha384';
    for (let i = 0; i < 400; i++) {
      const msg = Buffer.from(`message ${i}`);
      const raw = sign(hash, msg, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const der = derSignature(new Uint8Array(raw));
      expect(verify(hash, msg, { key: publicKey, dsaEncoding: 'der' }, der)).toBe(true);
    }
  });

  it('encodes minimal integers: high bit padded with 0x00, leading zeros dropped', () => {
    const r = Buffer.alloc(32, 0);
    r[31] = 0x80; // r = 128: one byte 0x80, needs the 0x00 pad
    const s = Buffer.alloc(32, 0);
    s[0] = 0x00;
    s[1] = 0x7f; // s = 0x7f00…: leading zero dropped, no pad
    const der = Buffer.from(derSignature(new Uint8Array(Buffer.concat([r, s]))));
    expect([der[0], der[1]]).toEqual([0x30, der.length - 2]);
    expect(der.subarray(2, 6).toString('hex')).toBe('02020080');
    expect(der.subarray(6, 8).toString('hex')).toBe('021f');
    expect(der[8]).toBe(0x7f);
  });
});
