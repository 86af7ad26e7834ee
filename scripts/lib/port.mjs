// A free TCP port on 127.0.0.1, for servers the tests, the bench and the scripts start.
// Dependency-free (node: built-ins only), so scripts can use it before `npm ci`.
import net from 'node:net';

/**
 * Asks the kernel for a free port and releases it for the caller (a child process binds it
 * next; a race with another process is possible, so callers that can retry do). Never 5432,
 * so a throwaway PostgreSQL cannot be mistaken for a system one.
 */
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
        const { port: p } = /** @type {net.AddressInfo} */ (srv.address());
        srv.close(() => resolve(p));
      });
    });
    if (port !== 5432) return port;
  }
}
