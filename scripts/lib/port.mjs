// A free TCP port on 127.0.0.1, for servers the tests, the bench and the scripts start.
// Dependency-free (node: built-ins only), so scripts can use it before `npm ci`.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
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

/**
 * Whether process `pid` holds a TCP socket listening on `port` (Linux: /proc/net/tcp{,6} and the
 * process's file descriptors): false once the process is gone, null where /proc/net/tcp cannot be
 * read (not Linux). freePort's race is real on a busy machine: another server can bind the port first, answer health checks and be taken for ours.
 */
export function listensOn(pid, port) {
  const inodes = new Set();
  let readable = false;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    readable = true;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; state 0A is LISTEN; field 9 the socket's inode.
      if (f.length > 9 && f[3] === '0A' && parseInt(f[1].slice(f[1].indexOf(':') + 1), 16) === port) inodes.add(f[9]);
    }
  }
  if (!readable) return null;
  if (inodes.size === 0) return false;
  let fds;
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    // Gone (or a zombie after a failed bind): whoever answers on the port, it is not this process.
    return false;
  }
  for (const fd of fds) {
    let target;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && inodes.has(m[1])) return true;
  }
  return false;
}
