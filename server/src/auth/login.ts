/** What every login method shares. */
import { BlockList, isIP } from 'node:net';
import { CofferError } from '../errors.js';

/** One answer for every way a password or secret_id login can fail: no hint which part was wrong. */
export function loginFailed(): CofferError {
  return new CofferError('login_failed', 'login failed: invalid credentials');
}

/** The client's address with IPv4-mapped IPv6 (`::ffff:10.0.0.1`) unwrapped. */
export function clientAddress(raw: string | undefined): string {
  if (!raw) return 'unknown';
  return raw.startsWith('::ffff:') && isIP(raw.slice(7)) === 4 ? raw.slice(7) : raw;
}

/** Parses `10.0.0.0/8`, `::1/128` or a bare address; null when malformed. */
export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const [address, prefixText, extra] = cidr.split('/');
  if (!address || extra !== undefined) return null;
  const version = isIP(address);
  if (version === 0) return null;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** True when `cidrs` is empty or one of them contains `address`. */
export function addressAllowed(address: string, cidrs: readonly string[]): boolean {
  if (cidrs.length === 0) return true;
  const version = isIP(address);
  if (version === 0) return false;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const c = parseCidr(cidr);
    if (c) list.addSubnet(c.address, c.prefix, c.family);
  }
  return list.check(address, version === 4 ? 'ipv4' : 'ipv6');
}

export function validCidrs(cidrs: readonly string[]): boolean {
  return cidrs.every((c) => parseCidr(c) !== null);
}
