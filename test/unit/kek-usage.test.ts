// keyring/usage.ts: the in-memory spending of reserved KEK usage counts, for one write (`plan`) and
// for a combined write's n encryptions (`planMany`): memory first, then one reservation covering
// the rest, and what was reserved but not spent becomes spendable only once committed.
import { KekUsage } from '@coffer/server/keyring/usage';

describe('KEK usage counting', () => {
  it('plans a group as one reservation, spending memory first', () => {
    const usage = new KekUsage(10, 1000);
    const first = usage.planMany('ns', 1, 4);
    expect(first.reserve).toBe(10);
    // Not committed yet: nothing is spendable from memory.
    expect(usage.planMany('ns', 1, 1).reserve).toBe(10);
    first.ticket(10).commit(); // 6 left in memory
    expect(usage.planMany('ns', 1, 6).reserve).toBe(0);
    // Memory empty again: a group larger than a block reserves what it needs, once.
    const big = usage.planMany('ns', 1, 25);
    expect(big.reserve).toBe(25);
    big.ticket(45).commit(); // nothing left over
    expect(usage.plan('ns', 1).reserve).toBe(10);
  });

  it('takes what memory holds and reserves only for the rest; says when the stored count reaches the limit', () => {
    const usage = new KekUsage(10, 30);
    usage.planMany('ns', 2, 3).ticket(10).commit(); // 7 left
    const group = usage.planMany('ns', 2, 9); // 7 from memory, 2 more: one block
    expect(group.reserve).toBe(10);
    const ticket = group.ticket(30);
    expect(ticket.overLimit).toBe(true);
    ticket.commit(); // 8 left
    expect(usage.planMany('ns', 2, 8).reserve).toBe(0);
    expect(usage.planMany('ns', 2, 1).reserve).toBe(10);
    // Other KEK versions and namespaces count apart.
    expect(usage.planMany('other', 2, 1).reserve).toBe(10);
  });
});
