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
 * lockouts reveal nothing about which names are real.
 *
 * The failure counts and lockouts live in a `LockoutStore`: in the database
 * (storage/repos/login-failures.ts) when servers share one, so N servers give
 * a guesser the budget of one and an unlock on any server lifts the lockout
 * everywhere; in memory for a single process (and the unit tests). The request
 * rate bucket stays per process: it is a brake on load, not the guessing budget.
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

/** Where failure counts and lockouts are kept. `client` is already a clientKey. */
export interface LockoutStore {
  /** Milliseconds until the subject is open again for this client (0: open now). */
  lockedForMs(subject: string, client: string): Promise<number>;
  failure(subject: string, client: string): Promise<void>;
  success(subject: string, client: string): Promise<void>;
  /** Lifts every lockout of the subject; true if one was in force. */
  unlock(subject: string): Promise<boolean>;
}

/** The store a database-backed guard uses (storage/repos/login-failures.ts has this shape). */
export interface SharedLockoutRepo {
  lockedForMs(subject: string, client: string): Promise<number>;
  countFailure(subject: string, client: string, rule: { max: number; baseMs: number; maxMs: number }): Promise<void>;
  clear(subject: string, client: string): Promise<void>;
  unlock(subject: string): Promise<boolean>;
  prune(idleMs: number): Promise<number>;
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
/** The per-subject-across-clients row of the shared store. */
const ALL_CLIENTS = '';
/** Counts nobody failed on for a day (and that lock nothing) are forgotten. */
const PRUNE_IDLE_MS = 24 * 3600_000;
/** Roughly one failure in this many prunes the shared store. */
const PRUNE_EVERY = 256;

export class LoginGuard {
  private readonly buckets = new Map<string, Bucket>();
  private readonly lockouts: LockoutStore;
  private readonly now: () => number;

  constructor(
    private readonly options: LoginGuardOptions,
    deps: { lockouts?: LockoutStore; now?: () => number } = {},
  ) {
    this.now = deps.now ?? Date.now;
    this.lockouts = deps.lockouts ?? new MemoryLockouts(options, this.now);
  }

  /** Throws 429 when the client is over its rate or the subject is locked out (for this client, or for all). */
  async check(client: string, subject: string): Promise<void> {
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
    const waitMs = await this.lockouts.lockedForMs(subject, from);
    if (waitMs > 0) throw rateLimited(waitMs / 1000);
  }

  failure(client: string, subject: string): Promise<void> {
    return this.lockouts.failure(subject, clientKey(client));
  }

  success(client: string, subject: string): Promise<void> {
    return this.lockouts.success(subject, clientKey(client));
  }

  /** Lifts every lockout of `subject` (on every server when the store is shared); true if one was in force. */
  unlock(subject: string): Promise<boolean> {
    return this.lockouts.unlock(subject);
  }
}

/** One process's counts, as before servers shared them. */
export class MemoryLockouts implements LockoutStore {
  /** Keyed by `subject \n client`. */
  private readonly perClient = new Map<string, Failures>();
  /** Keyed by subject. */
  private readonly total = new Map<string, Failures>();

  constructor(
    private readonly options: LoginGuardOptions,
    private readonly now: () => number = Date.now,
  ) {}

  lockedForMs(subject: string, client: string): Promise<number> {
    const until = Math.max(this.perClient.get(pairKey(subject, client))?.lockedUntil ?? 0, this.total.get(subject)?.lockedUntil ?? 0);
    return Promise.resolve(Math.max(0, until - this.now()));
  }

  failure(subject: string, client: string): Promise<void> {
    this.count(this.perClient, pairKey(subject, client), this.options.maxFailures);
    this.count(this.total, subject, this.options.maxFailuresTotal);
    return Promise.resolve();
  }

  success(subject: string, client: string): Promise<void> {
    this.perClient.delete(pairKey(subject, client));
    this.total.delete(subject);
    return Promise.resolve();
  }

  unlock(subject: string): Promise<boolean> {
    const now = this.now();
    let locked = (this.total.get(subject)?.lockedUntil ?? 0) > now;
    this.total.delete(subject);
    const prefix = `${subject}\n`;
    for (const [key, f] of this.perClient) {
      if (!key.startsWith(prefix)) continue;
      if (f.lockedUntil > now) locked = true;
      this.perClient.delete(key);
    }
    return Promise.resolve(locked);
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

/** Counts in the database every server shares: the same rules, on the database's clock. */
export class SharedLockouts implements LockoutStore {
  private failures = 0;

  constructor(
    private readonly repo: SharedLockoutRepo,
    private readonly options: LoginGuardOptions,
    private readonly onError: (what: string, err: unknown) => void = () => undefined,
  ) {}

  lockedForMs(subject: string, client: string): Promise<number> {
    return this.repo.lockedForMs(subject, client);
  }

  async failure(subject: string, client: string): Promise<void> {
    const { maxFailures, maxFailuresTotal, lockoutBaseMs: baseMs, lockoutMaxMs: maxMs } = this.options;
    await this.repo.countFailure(subject, client, { max: maxFailures, baseMs, maxMs });
    await this.repo.countFailure(subject, ALL_CLIENTS, { max: maxFailuresTotal, baseMs, maxMs });
    // The table is bounded by pruning instead of an LRU: now and then, by whichever server fails a login.
    if (++this.failures % PRUNE_EVERY === 0) void this.repo.prune(PRUNE_IDLE_MS).catch((err: unknown) => this.onError('pruning login failures failed', err));
  }

  success(subject: string, client: string): Promise<void> {
    return this.repo.clear(subject, client);
  }

  unlock(subject: string): Promise<boolean> {
    return this.repo.unlock(subject);
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
