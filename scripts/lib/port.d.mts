/** A free TCP port on 127.0.0.1 (never 5432), released for the caller to bind. */
export function freePort(): Promise<number>;
