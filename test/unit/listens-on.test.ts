// scripts/lib/port.mjs listensOn: whether a process holds the listening socket of a port, which is
// how test and bench helpers tell their own server from another one that took freePort's port.
// A process that is gone (a server that exited on EADDRINUSE) must read as false: reading it as
// "cannot tell" let an impostor's answer pass for the exited server's in a CI rehearsal.
import { createServer, type AddressInfo } from 'node:net';
import { listensOn } from '#lib/port.mjs';

describe('listensOn', () => {
  it('is true for the process holding the listener, false for another process, a gone one and an unused port', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      expect(listensOn(process.pid, port)).toBe(true);
      expect(listensOn(process.ppid, port)).toBe(false);
      // Far above any pid_max: no such process.
      expect(listensOn(2 ** 30, port)).toBe(false);
      const other = createServer();
      await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
      const unused = (other.address() as AddressInfo).port;
      await new Promise((resolve) => other.close(resolve));
      expect(listensOn(process.pid, unused)).toBe(false);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
