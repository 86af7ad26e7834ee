/**
 * Change notifications between Coffer servers that share one PostgreSQL:
 * published with pg_notify inside the writing transaction (so they are sent
 * at commit, and never for a rolled-back change) and received on a dedicated
 * LISTEN connection. PGlite is single-process (the data directory is
 * locked), so there the feed is always "up" and publishes nothing.
 */
import { EventEmitter } from 'node:events';
import { sql, type Kysely, type Transaction } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

export const CHANGE_CHANNEL = 'coffer_changes';
/** Longest wait between attempts to re-open the LISTEN connection. */
const MAX_RETRY_MS = 2_000;
/** A connection attempt that hangs (a host that drops packets) is abandoned and retried. */
const CONNECT_TIMEOUT_MS = 10_000;

export interface ChangeFeed {
  /** True while changes from other servers are being received. */
  readonly up: boolean;
  /** Emits 'change' (payload: string), 'up' and 'down'. */
  readonly events: EventEmitter;
  /**
   * The channel a statement can notify itself (`pg_notify(channel, payload)`, as `publish` does)
   * when a change is one statement; undefined where there is nothing to publish.
   */
  readonly channel?: string | undefined;
  publish(executor: Kysely<Database> | Transaction<Database>, payload: string): Promise<void>;
  close(): Promise<void>;
}

/** For a store only this process uses. */
export class LocalChangeFeed implements ChangeFeed {
  readonly up = true;
  readonly events = new EventEmitter();
  async publish(): Promise<void> {}
  async close(): Promise<void> {}
}

export class PostgresChangeFeed implements ChangeFeed {
  readonly events = new EventEmitter();
  readonly channel = CHANGE_CHANNEL;
  private client: pg.Client | null = null;
  private closed = false;
  private retryMs = 250;
  private timer: NodeJS.Timeout | null = null;
  up = false;

  constructor(
    private readonly connectionString: string,
    /** Told when the LISTEN connection breaks (for the log); reconnecting is automatic. */
    private readonly onLost: (err: Error) => void = () => {},
  ) {}

  /** Connects and listens; resolves once listening (or after the first failure, retrying in the background). */
  async start(): Promise<void> {
    await this.connect();
  }

  async publish(executor: Kysely<Database> | Transaction<Database>, payload: string): Promise<void> {
    await sql`select pg_notify(${this.channel}, ${payload})`.execute(executor);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const client = this.client;
    this.client = null;
    this.setUp(false);
    await client?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    // Every 'error' must have a listener (an unhandled one ends the process). An error and
    // then the end can both come; the first one counts. A client that breaks before it is
    // adopted (between LISTEN and the check below) is never marked up.
    let broken = false;
    const lost = (err?: Error) => {
      if (broken) return;
      broken = true;
      if (this.client !== client) return;
      this.client = null;
      this.setUp(false);
      this.onLost(err ?? new Error('the LISTEN connection ended'));
      client.end().catch(() => {});
      this.scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (msg) => {
      if (msg.channel === CHANGE_CHANNEL && msg.payload) this.events.emit('change', msg.payload);
    });
    let failed = false;
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch {
      failed = true;
    }
    if (failed || broken || this.closed) {
      await client.end().catch(() => {});
      this.scheduleReconnect();
      return;
    }
    this.client = client;
    this.retryMs = 250;
    this.setUp(true);
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, this.retryMs);
    this.timer.unref();
    // Capped low: while the feed is down this server misses other servers' revocations and
    // policy changes (reloaded on reconnect) and reads bypass the cache.
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    this.events.emit(up ? 'up' : 'down');
  }
}
