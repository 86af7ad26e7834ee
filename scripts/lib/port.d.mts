/** A free TCP port on 127.0.0.1 (never 5432), released for the caller to bind. */
export function freePort(): Promise<number>;
/** Whether process `pid` holds a TCP socket listening on `port` (Linux /proc); false once it is gone; null where /proc/net/tcp cannot be read. */
export function listensOn(pid: number, port: number): boolean | null;
