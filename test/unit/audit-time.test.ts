// `coffer audit --since/--until`: the times the CLI turns into the ISO timestamps the server takes.
import { auditTime } from '@coffer/cli/commands/audit';

const NOW = Date.UTC(2025, 4, 10, 12, 0, 0); // 2025-05-10T12:00:00Z

describe('audit --since/--until times', () => {
  it.each([
    ['30s', '2025-05-10T11:59:30.000Z'],
    ['15m', '2025-05-10T11:45:00.000Z'],
    ['2h', '2025-05-10T10:00:00.000Z'],
    ['7d', '2025-05-03T12:00:00.000Z'],
    ['2w', '2025-04-26T12:00:00.000Z'],
    ['0m', '2025-05-10T12:00:00.000Z'],
  ])('a duration ago: %s', (value, iso) => {
    expect(auditTime(value, NOW)).toBe(iso);
  });

  it.each([
    ['2025-05-01', '2025-05-01T00:00:00.000Z'],
    ['2024-02-29', '2024-02-29T00:00:00.000Z'],
    ['2025-05-01T12:00:00Z', '2025-05-01T12:00:00.000Z'],
    ['2025-05-01T12:00:00.5+02:00', '2025-05-01T10:00:00.500Z'],
    ['2025-05-01t12:00z', '2025-05-01T12:00:00.000Z'],
  ])('an ISO 8601 time: %s', (value, iso) => {
    expect(auditTime(value, NOW)).toBe(iso);
  });

  it('reads a time without an offset as local time', () => {
    expect(auditTime('2025-05-01T12:00', NOW)).toBe(new Date(2025, 4, 1, 12, 0).toISOString());
  });

  it.each(['yesterday', '1y', '2h30m', '-5m', '15 m', '', 'May 1, 2025', '1714560000', '2025-02-29', '2025-04-31', '2025-13-01', '2025-05-01T24:30', '99999999w'])(
    'refuses %j (commander reports it as a usage error)',
    (value) => {
      expect(() => auditTime(value, NOW)).toThrow(/^expected an ISO 8601 time .* or a duration ago/);
    },
  );
});
