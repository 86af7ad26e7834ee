// The login guard on a fake clock: lockouts per (name, client), a ceiling per name across
// clients, doubling, unlock, and IPv6 clients counted by their /64.
import { httpStatus } from '@coffer/server/http/status';
import type { CofferError } from '@coffer/server/errors';
import { LoginGuard, clientKey } from '@coffer/server/auth/login-guard';

describe('LoginGuard', () => {
  let now = 0;
  const make = () => new LoginGuard({ ratePerSecond: 0, maxFailures: 3, maxFailuresTotal: 10, lockoutBaseMs: 1000, lockoutMaxMs: 8000 }, { now: () => now });
  const status = async (g: LoginGuard, client: string, subject: string) => {
    try {
      await g.check(client, subject);
      return 'open';
    } catch (err) {
      return httpStatus(err as CofferError);
    }
  };
  beforeEach(() => {
    now = 1_000_000;
  });

  it('locks a name for the failing client only, doubling with each further failure', async () => {
    const g = make();
    for (let i = 0; i < 3; i++) await g.failure('10.0.0.1', 'userpass:a');
    expect(await status(g, '10.0.0.1', 'userpass:a')).toBe(429);
    expect(await status(g, '10.0.0.2', 'userpass:a')).toBe('open');
    expect(await status(g, '10.0.0.1', 'userpass:b')).toBe('open');
    now += 1001;
    expect(await status(g, '10.0.0.1', 'userpass:a')).toBe('open');
    await g.failure('10.0.0.1', 'userpass:a'); // 4th: 2 s
    now += 1500;
    expect(await status(g, '10.0.0.1', 'userpass:a')).toBe(429);
    now += 600;
    expect(await status(g, '10.0.0.1', 'userpass:a')).toBe('open');
  });

  it('locks the name everywhere past the ceiling across clients, until a success or an unlock', async () => {
    const g = make();
    for (let c = 0; c < 5; c++) for (let i = 0; i < 2; i++) await g.failure(`10.0.1.${c}`, 'userpass:a');
    expect(await status(g, '192.0.2.9', 'userpass:a')).toBe(429);
    expect(await g.unlock('userpass:a')).toBe(true);
    expect(await status(g, '192.0.2.9', 'userpass:a')).toBe('open');
    expect(await g.unlock('userpass:a')).toBe(false);
    for (let i = 0; i < 9; i++) await g.failure(`10.0.2.${i}`, 'userpass:a');
    await g.success('192.0.2.9', 'userpass:a');
    await g.failure('10.0.3.1', 'userpass:a');
    expect(await status(g, '192.0.2.9', 'userpass:a')).toBe('open');
  });

  it('an unlock frees every client of that name and no other name', async () => {
    const g = make();
    for (const client of ['10.0.0.1', '10.0.0.2']) for (let i = 0; i < 3; i++) await g.failure(client, 'userpass:a');
    for (let i = 0; i < 3; i++) await g.failure('10.0.0.1', 'userpass:ab');
    expect(await g.unlock('userpass:a')).toBe(true);
    expect(await status(g, '10.0.0.1', 'userpass:a')).toBe('open');
    expect(await status(g, '10.0.0.2', 'userpass:a')).toBe('open');
    expect(await status(g, '10.0.0.1', 'userpass:ab')).toBe(429);
  });

  it('counts IPv6 clients by their /64', async () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:0db8:0001:0002::')).toBe('2001:db8:1:2::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(clientKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(clientKey('10.1.2.3')).toBe('10.1.2.3');
    const g = make();
    for (let i = 0; i < 3; i++) await g.failure(`2001:db8:1:2::${i + 1}`, 'userpass:a');
    expect(await status(g, '2001:db8:1:2::ffff', 'userpass:a')).toBe(429);
    expect(await status(g, '2001:db8:1:3::1', 'userpass:a')).toBe('open');
  });

  it('still limits the request rate per client', async () => {
    const g = new LoginGuard({ ratePerSecond: 1, maxFailures: 3, maxFailuresTotal: 10, lockoutBaseMs: 1000, lockoutMaxMs: 8000 }, { now: () => now });
    expect(await status(g, '10.0.0.1', 'x')).toBe('open');
    expect(await status(g, '10.0.0.1', 'y')).toBe('open');
    expect(await status(g, '10.0.0.1', 'z')).toBe(429);
    expect(await status(g, '10.0.0.2', 'z')).toBe('open');
  });
});
