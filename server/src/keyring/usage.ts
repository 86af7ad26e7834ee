/**
 * Counts encryptions (DEK wraps) per KEK version without a database round
 * trip of its own: a server reserves a block of counts at a time
 * (`encryptions = encryptions + block`, inside the write's statement) and
 * spends it from memory. The stored count is therefore never below the true
 * count — a crash or a rolled-back write only wastes reserved counts — which
 * is the safe direction for a usage limit.
 */
import type { Executor } from '../storage/executor.js';
import { namespaceKeysRepo } from '../storage/repos/namespace-keys.js';

/** The outcome of counting one encryption. */
export interface UsageTicket {
  /** Call after the write committed: only then is a freshly reserved block spendable. */
  commit(): void;
  /** The version's stored count reached the rotation threshold. */
  overLimit: boolean;
}

const SPENT_FROM_MEMORY: UsageTicket = { commit: () => undefined, overLimit: false };

export class KekUsage {
  /** Reserved but not yet spent encryptions, per `${namespaceId}:${kekVersion}`. */
  private readonly reserved = new Map<string, number>();

  constructor(
    private readonly block: number,
    readonly limit: number,
  ) {}

  /**
   * Counts one encryption under a KEK version. `reserve`: how many encryptions the write's own
   * transaction must add to the version's stored count (0: this one was spent from memory; the
   * write's statement does the addition, see secrets.ts `insertVersionAndPrune`); `ticket` takes
   * the stored count that addition returned.
   */
  plan(namespaceId: string, kekVersion: number): { reserve: number; ticket(total: number): UsageTicket } {
    return this.planMany(namespaceId, kekVersion, 1);
  }

  /**
   * `plan` for `n` encryptions under one KEK version written in one transaction (a combined write,
   * secrets/write-combiner.ts): spent from memory while it lasts, the rest covered by ONE
   * reservation (a block, or more for a group larger than a block) — not a block per encryption,
   * which would push the stored count (and so the rotation) ahead by up to n blocks.
   */
  planMany(namespaceId: string, kekVersion: number, n: number): { reserve: number; ticket(total: number): UsageTicket } {
    const id = `${namespaceId}:${kekVersion}`;
    const left = this.reserved.get(id) ?? 0;
    if (left >= n) {
      this.reserved.set(id, left - n);
      return { reserve: 0, ticket: () => SPENT_FROM_MEMORY };
    }
    // What memory held is spent by this group; the reservation covers the rest.
    this.reserved.set(id, 0);
    const needed = n - left;
    const reserve = Math.max(this.block, needed);
    return {
      reserve,
      ticket: (total) => ({
        commit: () => this.reserved.set(id, (this.reserved.get(id) ?? 0) + reserve - needed),
        overLimit: total >= this.limit,
      }),
    };
  }

  /** Forgets reservations of a namespace (its keys were rotated away or destroyed). */
  forgetNamespace(namespaceId: string): void {
    for (const id of this.reserved.keys()) if (id.startsWith(`${namespaceId}:`)) this.reserved.delete(id);
  }
}

/**
 * Adds `n` to a KEK version's encryption count; returns the new count.
 * Kept for kms/kek-lifecycle.ts until it takes the namespace_keys repo itself.
 */
export async function addEncryptions(trx: Executor, namespaceId: string, kekVersion: number, n: number): Promise<number> {
  return namespaceKeysRepo(trx).addEncryptions(namespaceId, kekVersion, n);
}
