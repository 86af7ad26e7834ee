/**
 * Brakes on guessing, without handing anyone a way to lock a real user out.
 *
 * - A token bucket per client address for every login request.
 * - Per login subject (a username, an AppRole) AND client address, a lockout
 *   that doubles with each failure past `maxFailures`: the guesser locks out
 *   themselves, not the user logging in from elsewhere.
 * - Per subject across all addresses, a much higher ceiling
 *   (`maxFailuresTotal`) with the same doubling lockout: a guesser spread over
 *   many addresses still meets a brake. Only then does the right password get
 *   429 from everywhere, and an admin can lift it (unlock).
 *
 * IPv6 clients count by their /64 (one host or site usually holds a whole
 * /64, so single addresses would be free to rotate through). A locked subject
 * is refused with 429 whether or not it exists and whatever the password, so
 * lockouts reveal nothing about which names are real. State is per server
 * process: with N servers an attacker gets at most N times the budget, and an
 * unlock lifts the lockout on the server that receives it.
 */
import { isIP } from 'node:net';
import { CofferError } from '../errors.js';

export interface LoginGuardOptions {
  /** Login requests per second per client address (burst = 2×). 0 turns the limit off. */
  ratePerSecond: number;
  /** Consecutive failures of one subject from one client address before that address is locked out of it. */
  maxFailures: number;
  /** Consecutive failures of one subject from all addresses together before it is locked for everyone. */
  maxFailuresTotal: number;
  /** First lockout; doubles with every further failure. */
  lockoutBaseMs: number;
  lockoutMaxMs: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

interface Failures {
  count: number;
  lockedUntil: number;
}

const MAX_TRACKED = 100_000;

export class LoginGuard {
  private readonly buckets = new Map<string, Bucket>();
  /** Keyed by `subject \n client`. */
  private readonly perClient = new Map<string, Failures>();
  /** Keyed by subject. */
  private readonly total = new Map<string, Failures>();

  constructor(
    private readonly options: LoginGuardOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws 429 when the client is over its rate or the subject is locked out (for this client, or for all). */
  check(client: string, subject: string): void {
    const now = this.now();
    const from = clientKey(client);
    const rate = this.options.ratePerSecond;
    if (rate > 0) {
      const burst = rate * 2;
      const b = this.buckets.get(from) ?? { tokens: burst, at: now };
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
      b.at = now;
      if (b.tokens < 1) {
        remember(this.buckets, from, b);
        throw rateLimited((1 - b.tokens) / rate);
      }
      b.tokens -= 1;
      remember(this.buckets, from, b);
    }
    const until = Math.max(this.perClient.get(pairKey(subject, from))?.lockedUntil ?? 0, this.total.get(subject)?.lockedUntil ?? 0);
    if (until > now) throw rateLimited((until - now) / 1000);
  }

  failure(client: string, subject: string): void {
    this.count(this.perClient, pairKey(subject, clientKey(client)), this.options.maxFailures);
    this.count(this.total, subject, this.options.maxFailuresTotal);
  }

  success(client: string, subject: string): void {
    this.perClient.delete(pairKey(subject, clientKey(client)));
    this.total.delete(subject);
  }

  /** Lifts every lockout of `subject` on this server (an admin's unlock); true if one was in force. */
  unlock(subject: string): boolean {
    const now = this.now();
    let locked = (this.total.get(subject)?.lockedUntil ?? 0) > now;
    this.total.delete(subject);
    const prefix = `${subject}\n`;
    for (const [key, f] of this.perClient) {
      if (!key.startsWith(prefix)) continue;
      if (f.lockedUntil > now) locked = true;
      this.perClient.delete(key);
    }
    return locked;
  }

  private count(map: Map<string, Failures>, key: string, max: number): void {
    const f = map.get(key) ?? { count: 0, lockedUntil: 0 };
    f.count += 1;
    const over = f.count - max;
    if (over >= 0) {
      const ms = Math.min(this.options.lockoutMaxMs, this.options.lockoutBaseMs * 2 ** Math.min(over, 30));
      f.lockedUntil = this.now() + ms;
    }
    remember(map, key, f);
  }
}

const pairKey = (subject: string, client: string) => `${subject}\n${client}`;

/** The unit a client is counted by: an IPv4 address, or an IPv6 address's /64. */
export function clientKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const groups = expandIpv6(address);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : address;
}

/** The eight 16-bit groups of an IPv6 address (zone id dropped, embedded IPv4 converted), or null. */
function expandIpv6(address: string): string[] | null {
  let text = address.split('%')[0]!.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return null;
  return [...head, ...Array<string>(missing).fill('0'), ...tail].map((g) => Number.parseInt(g, 16).toString(16));
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_TRACKED) map.delete(map.keys().next().value as string);
}

function rateLimited(retryAfterSeconds: number): CofferError {
  return new CofferError('rate_limited', 'too many login attempts; wait and try again', undefined, retryAfterSeconds);
}
