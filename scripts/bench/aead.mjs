// AEAD micro-benchmark (`npm run bench -- --aead`, and a short version in every run): seal+open
// pairs per second of one XChaCha20-Poly1305 envelope, the server's path (crypto/aead.ts:
// OpenSSL's ChaCha20-Poly1305 under a noble HChaCha20 subkey) against the pure-JavaScript
// @noble/ciphers xchacha20poly1305 it replaced (the same envelope, built as the server used to).
// Both run in this process, in alternating rounds, so a busy machine slows both alike; the
// figure that matters is the ratio.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { BenchError, info } from './common.mjs';
import { fmtInt } from './report.mjs';

/** The envelope functions as the server had them before: the whole AEAD in JavaScript. */
function nobleSeal(key, plaintext, aad) {
  const out = new Uint8Array(1 + 24 + plaintext.length + 16);
  out[0] = 1;
  const nonce = randomBytes(24);
  out.set(nonce, 1);
  xchacha20poly1305(key, nonce, aad).encrypt(plaintext, out.subarray(25));
  return out;
}
function nobleOpen(key, envelope, aad) {
  return xchacha20poly1305(key, envelope.subarray(1, 25), aad).decrypt(envelope.subarray(25));
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Pairs per second of `pair()` over `ms` milliseconds (checked every 64 calls). */
function rate(pair, ms) {
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let i = 0; i < 64; i++) pair();
    n += 64;
    t = performance.now();
  }
  return (n * 1000) / (t - t0);
}

/**
 * Measures both implementations on `sizes` (bytes of plaintext) for about `seconds` in all.
 * Returns { sizes: [{ size, native, noble, ratio, nativeOpen, nobleOpen, openRatio }] } per second.
 */
export async function benchAead({ serverMain, seconds, sizes = [500, 32] }) {
  const aeadUrl = pathToFileURL(path.join(path.dirname(serverMain), 'crypto', 'aead.js')).href;
  const { sealWithKey, openWithKey } = await import(aeadUrl);
  const key = new Uint8Array(randomBytes(32));
  const aad = new Uint8Array(randomBytes(60)); // about the size of a secret value's AAD
  const results = [];
  for (const size of sizes) {
    const plaintext = new Uint8Array(randomBytes(size));
    // The two must agree before their speed means anything.
    if (Buffer.compare(Buffer.from(nobleOpen(key, sealWithKey(key, plaintext, aad), aad)), Buffer.from(plaintext)) !== 0
      || Buffer.compare(Buffer.from(openWithKey(key, nobleSeal(key, plaintext, aad), aad, 'bench')), Buffer.from(plaintext)) !== 0) {
      throw new BenchError(`aead: the server's envelopes and noble's disagree at ${size} B`);
    }
    const sealed = sealWithKey(key, plaintext, aad);
    const fns = {
      native: () => openWithKey(key, sealWithKey(key, plaintext, aad), aad, 'bench'),
      noble: () => nobleOpen(key, nobleSeal(key, plaintext, aad), aad),
      // What a read does (twice: the DEK, then the value): open only.
      nativeOpen: () => openWithKey(key, sealed, aad, 'bench'),
      nobleOpen: () => nobleOpen(key, sealed, aad),
    };
    const rounds = 10;
    const sliceMs = Math.max(10, (seconds * 1000) / sizes.length / rounds / 4);
    for (const f of Object.values(fns)) rate(f, 20); // warm up (JIT)
    const rates = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) for (const [k, f] of Object.entries(fns)) rates[k].push(rate(f, sliceMs));
    const row = Object.fromEntries([['size', size], ...Object.entries(rates).map(([k, xs]) => [k, median(xs)])]);
    row.ratio = row.native / row.noble;
    row.openRatio = row.nativeOpen / row.nobleOpen;
    info(
      `aead ${size} B: seal+open native ${fmtInt(row.native)}/s vs noble ${fmtInt(row.noble)}/s = ${row.ratio.toFixed(2)}×; ` +
        `open native ${fmtInt(row.nativeOpen)}/s vs noble ${fmtInt(row.nobleOpen)}/s = ${row.openRatio.toFixed(2)}×`,
    );
    results.push(row);
  }
  return { seconds, sizes: results };
}
