// Throwaway SoftHSM2 tokens, made with softhsm2-util. SoftHSM2 reads SOFTHSM2_CONF with getenv()
// at C_Initialize, and jest hands each test file a copy of process.env that native code never
// sees, so in-process servers use the token directory scripts/test.mjs set up for the whole run
// (SOFTHSM2_CONF in the real environment); server processes get `env()`, which names it too.
// Labels get a random suffix, so suites never meet each other's tokens. SoftHSM2 lists tokens
// at C_Initialize: create every token a suite needs before its first server starts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initSoftHsmToken, writeSoftHsmConf } from '#lib/softhsm.mjs';
import { softHsmModule, softHsmUtil } from './env.js';

export interface SoftHsm {
  module: string;
  conf: string;
  dir: string;
  pin: string;
  soPin: string;
  /** Server config for a token (COFFER_* names as keys of Config). */
  config(label: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** Environment for a server process using a token. */
  env(label: string, extra?: Record<string, string>): Record<string, string>;
  initToken(label: string): void;
  cleanup(): void;
}

export function createSoftHsm(labels: string[]): SoftHsm {
  const module = softHsmModule();
  if (!module) throw new Error('SoftHSM2 is not available (use describeIfSoftHsm)');
  const dir = mkdtempSync(join(tmpdir(), 'coffer-softhsm-'));
  let conf = process.env.SOFTHSM2_CONF ?? '';
  if (!conf) {
    // Outside scripts/test.mjs: only server processes (which get env()) can use these tokens.
    conf = writeSoftHsmConf(join(dir, 'softhsm2.conf'), join(dir, 'tokens'));
  }
  const suffix = randomBytes(4).toString('hex');
  const real = (label: string) => (label.startsWith('no-such') ? label : `${label}-${suffix}`.slice(-32));
  const pin = '246810';
  const soPin = '13579';
  const pinFile = join(dir, 'pin');
  writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  const hsm: SoftHsm = {
    module,
    conf,
    dir,
    pin,
    soPin,
    config: (label, extra = {}) => ({
      seal: 'pkcs11',
      pkcs11Module: module,
      pkcs11TokenLabel: real(label),
      pkcs11PinFile: pinFile,
      ...extra,
    }),
    env: (label, extra = {}) => ({
      SOFTHSM2_CONF: conf,
      COFFER_SEAL: 'pkcs11',
      COFFER_PKCS11_MODULE: module,
      COFFER_PKCS11_TOKEN_LABEL: real(label),
      COFFER_PKCS11_PIN_FILE: pinFile,
      ...extra,
    }),
    initToken(label) {
      initSoftHsmToken({ util: softHsmUtil(), conf, label: real(label), soPin, pin });
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  for (const label of labels) hsm.initToken(label);
  return hsm;
}
