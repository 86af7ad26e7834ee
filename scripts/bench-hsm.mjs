#!/usr/bin/env node
// HSM cost and event-loop impact of the PKCS#11 seal, against a throwaway SoftHSM2 token:
// root-key wraps+unwraps (what an unseal, a KEK cache miss or a rotation does) through
// Coffer's async path (pkcs11js *Async on the libuv pool), compared with the same calls made
// synchronously. Reports ops/s and the event loop's worst delay while they run.
//   node scripts/bench-hsm.mjs [--ops N] [--concurrency C]
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { findSoftHsm, initSoftHsmToken, writeSoftHsmConf } from './lib/softhsm.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { ops: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '2' } } });
const OPS = Number(values.ops);
const CONC = Number(values.concurrency);
const { module, util } = findSoftHsm();
if (!module) {
  console.error('SoftHSM2 not found (apt-get install softhsm2)');
  process.exit(1);
}
const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-hsm-'));
// Set in this process's real environment before the module is loaded (C_Initialize reads it).
process.env.SOFTHSM2_CONF = writeSoftHsmConf(path.join(dir, 'softhsm2.conf'), path.join(dir, 'tokens'));
initSoftHsmToken({ util: util ?? 'softhsm2-util', conf: process.env.SOFTHSM2_CONF, label: 'bench', soPin: '5678', pin: '1234' });

const { Pkcs11Token } = await import(path.join(root, 'server/dist/seal/pkcs11.js'));
const { Pkcs11RootKey } = await import(path.join(root, 'server/dist/seal/pkcs11-root-key.js'));
const token = Pkcs11Token.open({ module, tokenLabel: 'bench', pin: '1234', sessions: CONC });
const handle = await token.generateRootKey('bench-root');
const rootKey = new Pkcs11RootKey(token, handle, 1, 'bench-root');
const aad = Buffer.from('["coffer/v1","kek","bench",1,1]');
const kek = randomBytes(32);

async function run(label, op) {
  // A 1 ms ticker: the longest gap between its ticks is the longest time the event loop could not
  // serve anything else (a request, a timer) while the HSM work ran.
  let last = performance.now();
  let maxGap = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  const lat = [];
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONC }, async () => {
      while (next < OPS) {
        next++;
        const t = performance.now();
        await op();
        lat.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, 5));
  clearInterval(ticker);
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))].toFixed(3);
  console.log(
    `${label.padEnd(44)} ${Math.round(OPS / seconds).toString().padStart(6)} wrap+unwrap/s   p50 ${pct(50)} ms  p99 ${pct(99)} ms   longest event-loop stall ${maxGap.toFixed(1)} ms`,
  );
}

console.log(`SoftHSM2 ${module}, ${OPS} operations, ${CONC} concurrent; node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}`);
await run('async (Coffer: C_EncryptAsync/C_DecryptAsync)', async () => {
  const wrapped = await rootKey.wrapKey(kek, aad);
  (await rootKey.unwrapKey(wrapped, aad, 'bench')).fill(0);
});
// The same work with the blocking calls, for comparison (what Coffer does not do).
const require = createRequire(path.join(root, 'server', 'package.json'));
const m = require('pkcs11js');
const lib = new m.PKCS11();
lib.load(module);
try {
  lib.C_Initialize({ flags: m.CKF_OS_LOCKING_OK });
} catch {
  /* already initialised by Coffer's token above */
}
const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === 'bench');
const session = lib.C_OpenSession(slot, m.CKF_SERIAL_SESSION);
const gcm = (iv) => ({ mechanism: m.CKM_AES_GCM, parameter: { type: m.CK_PARAMS_AES_GCM_v240, iv, ivBits: 96, aad, tagBits: 128 } });
await run('sync (blocking C_Encrypt/C_Decrypt)', async () => {
  const iv = randomBytes(12);
  lib.C_EncryptInit(session, gcm(iv), handle);
  const ct = lib.C_Encrypt(session, kek, Buffer.alloc(48));
  lib.C_DecryptInit(session, gcm(iv), handle);
  lib.C_Decrypt(session, ct, Buffer.alloc(48)).fill(0);
});
lib.C_CloseSession(session);
await token.destroyObject(handle);
token.close();
rmSync(dir, { recursive: true, force: true });
