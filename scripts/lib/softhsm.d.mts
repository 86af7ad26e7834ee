/** The executable `cmd` on PATH, or null. */
export function onPath(cmd: string, env?: NodeJS.ProcessEnv): string | null;

export interface SoftHsmInstall {
  /** Path of libsofthsm2.so, or null. */
  module: string | null;
  /** Path of softhsm2-util, or null. */
  util: string | null;
  /** SOFTHSM2_MODULE, when set (then it is the only candidate). */
  fromEnv: string | undefined;
  ok: boolean;
}

export function findSoftHsm(env?: NodeJS.ProcessEnv): SoftHsmInstall;

/** Writes a SoftHSM2 config at `confPath` whose tokens live in `tokenDir` (created); returns `confPath`. */
export function writeSoftHsmConf(confPath: string, tokenDir: string): string;

/** `softhsm2-util --init-token --free` in the token directory of `conf`; throws on failure. */
export function initSoftHsmToken(options: { util?: string; conf: string; label: string; soPin: string; pin: string; module?: string }): void;
