// The shipped deploy/haproxy/haproxy.cfg, pointed at local ports: tests run the very file operators
// deploy, so its retry and health-check policy cannot drift from what the tests measured.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHIPPED_HAPROXY_CFG = fileURLToPath(new URL('../../../deploy/haproxy/haproxy.cfg', import.meta.url));

/** The shipped configuration with its frontend on `front`, its stats on `stats` and coffer-1..3 on `servers`. */
export function shippedHaproxyConfig(front: number, stats: number, servers: readonly [number, number, number]): string {
  let cfg = readFileSync(SHIPPED_HAPROXY_CFG, 'utf8');
  const swap = (pattern: RegExp, to: string) => {
    // A line the shipped file no longer has would silently leave Docker's names in: fail instead.
    if (!pattern.test(cfg)) throw new Error(`deploy/haproxy/haproxy.cfg has no line matching ${pattern}`);
    cfg = cfg.replace(pattern, to);
  };
  swap(/^(\s*)bind :8200$/m, `$1bind 127.0.0.1:${front}`);
  swap(/^(\s*)bind :8404$/m, `$1bind 127.0.0.1:${stats}`);
  servers.forEach((port, i) => swap(new RegExp(`^(\\s*server coffer-${i + 1}) coffer-${i + 1}:8200$`, 'm'), `$1 127.0.0.1:${port}`));
  if (/coffer-\d:8200|bind :/.test(cfg)) throw new Error('deploy/haproxy/haproxy.cfg has more servers or listeners than the tests know');
  return cfg;
}
