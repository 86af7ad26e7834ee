// The audit log remembers token accessors' HMACs (every request of a token names the same one):
// a remembered HMAC must be the one `hmac` gives under the key in effect, and never outlive it.
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { AuditLog, type AuditStore } from '@coffer/server/audit/audit-log';

const log = () =>
  // Only the keys are used here: no entry is ever written.
  new AuditLog({} as AuditStore, { database: true, lines: [], timeoutMs: 1000, checkpointEvery: 100, maxBatch: 100 }, pino({ level: 'silent' }));

describe('audit accessor HMACs', () => {
  it('are the HMAC under the key in effect, and are forgotten with it', () => {
    const audit = log();
    expect(audit.accessorHmac('acc-1')).toBeNull(); // sealed: no key, nothing recorded
    audit.setKey(new Uint8Array(randomBytes(32)));
    const first = audit.accessorHmac('acc-1');
    expect(first).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(audit.accessorHmac('acc-1')).toBe(first);
    expect(audit.accessorHmac('acc-1')).toBe(audit.hmac('acc-1'));
    expect(audit.accessorHmac('acc-2')).not.toBe(first);
    // A new key (unsealed again after a rotation): the remembered HMAC must not survive it.
    audit.setKey(new Uint8Array(randomBytes(32)));
    expect(audit.accessorHmac('acc-1')).not.toBe(first);
    expect(audit.accessorHmac('acc-1')).toBe(audit.hmac('acc-1'));
    audit.setKey(null);
    expect(audit.accessorHmac('acc-1')).toBeNull();
  });
});
