// SoftHSM2 for the tests, the bench and the scripts: find the module and softhsm2-util, write a
// private token directory's config, initialise a token in it. Dependency-free.
//
// SoftHSM2 reads SOFTHSM2_CONF with getenv() at C_Initialize: a process that loads the module
// must have it in its real environment before that (jest's per-file process.env copy is not it).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];

/** The executable `cmd` on PATH, or null. */
export function onPath(cmd, env = process.env) {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      const st = statSync(p);
      if (st.isFile() && st.mode & 0o111) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

/**
 * The PKCS#11 module (SOFTHSM2_MODULE when set, else the usual install locations) and
 * softhsm2-util on PATH. `ok` when both exist.
 */
export function findSoftHsm(env = process.env) {
  const fromEnv = env.SOFTHSM2_MODULE || undefined;
  const module = (fromEnv ? [fromEnv] : MODULE_CANDIDATES).find((p) => existsSync(p)) ?? null;
  const util = onPath('softhsm2-util', env);
  return { module, util, fromEnv, ok: Boolean(module && util) };
}

/** Writes a SoftHSM2 config at `confPath` whose tokens live in `tokenDir` (created). */
export function writeSoftHsmConf(confPath, tokenDir) {
  mkdirSync(tokenDir, { recursive: true });
  writeFileSync(confPath, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  return confPath;
}

/** `softhsm2-util --init-token --free` in the token directory of `conf`; throws on failure. */
export function initSoftHsmToken({ util = 'softhsm2-util', conf, label, soPin, pin, module }) {
  const args = ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', pin];
  if (module) args.push('--module', module);
  execFileSync(util, args, { env: { ...process.env, SOFTHSM2_CONF: conf }, stdio: 'pipe' });
}
