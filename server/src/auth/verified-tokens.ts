/**
 * Tokens that passport-jwt has verified, remembered by the SHA-256 of the
 * token (the token itself is not kept) so a client's next request skips the
 * JWT parse and HMAC. A hit is honoured only until the token's expiry and
 * while its accessor is not revoked; the cache is bounded and dropped on seal.
 */
import type { Principal } from '../policy/policy.js';

const MAX_AGE_MS = 60_000;

interface Entry {
  principal: Principal;
  until: number;
}

export class VerifiedTokenCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly maxEntries: number,
    private readonly isRevoked: (accessor: string) => boolean,
    private readonly now: () => number = Date.now,
  ) {}

  get(tokenHash: string): Principal | undefined {
    const entry = this.entries.get(tokenHash);
    if (!entry) return undefined;
    if (entry.until <= this.now() || this.isRevoked(entry.principal.accessor)) {
      this.entries.delete(tokenHash);
      return undefined;
    }
    return entry.principal;
  }

  set(tokenHash: string, principal: Principal): void {
    if (this.maxEntries <= 0) return;
    const now = this.now();
    const until = Math.min(principal.expiresAt ?? Number.POSITIVE_INFINITY, now + MAX_AGE_MS);
    if (until <= now) return;
    this.entries.delete(tokenHash);
    this.entries.set(tokenHash, { principal, until });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
  }

  clear(): void {
    this.entries.clear();
  }
}
