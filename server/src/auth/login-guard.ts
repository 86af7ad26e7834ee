/**
 * Brakes on guessing: a token bucket per client address for every login
 * request, and per login subject (a username, a role) a lockout that doubles
 * with each failure past a threshold. A locked subject is refused with 429
 * whether or not it exists and whatever the password, so lockouts reveal
 * nothing about which names are real. State is per server process: with N
 * servers an attacker gets at most N times the budget.
 */
import { CofferError } from '../errors.js';

export interface LoginGuardOptions {
  /** Login requests per second per client address (burst = 2×). 0 turns the limit off. */
  ratePerSecond: number;
  /** Consecutive failures before a subject is locked. */
  maxFailures: number;
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
  private readonly failures = new Map<string, Failures>();

  constructor(
    private readonly options: LoginGuardOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws 429 when the client is over its rate or the subject is locked out. */
  check(client: string, subject: string): void {
    const now = this.now();
    const rate = this.options.ratePerSecond;
    if (rate > 0) {
      const burst = rate * 2;
      const b = this.buckets.get(client) ?? { tokens: burst, at: now };
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
      b.at = now;
      if (b.tokens < 1) {
        remember(this.buckets, client, b);
        throw rateLimited((1 - b.tokens) / rate);
      }
      b.tokens -= 1;
      remember(this.buckets, client, b);
    }
    const f = this.failures.get(subject);
    if (f && f.lockedUntil > now) throw rateLimited((f.lockedUntil - now) / 1000);
  }

  failure(subject: string): void {
    const f = this.failures.get(subject) ?? { count: 0, lockedUntil: 0 };
    f.count += 1;
    const over = f.count - this.options.maxFailures;
    if (over >= 0) {
      const ms = Math.min(this.options.lockoutMaxMs, this.options.lockoutBaseMs * 2 ** Math.min(over, 30));
      f.lockedUntil = this.now() + ms;
    }
    remember(this.failures, subject, f);
  }

  success(subject: string): void {
    this.failures.delete(subject);
  }
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_TRACKED) map.delete(map.keys().next().value as string);
}

function rateLimited(retryAfterSeconds: number): CofferError {
  return new CofferError(429, 'rate_limited', 'too many login attempts; wait and try again', undefined, retryAfterSeconds);
}
