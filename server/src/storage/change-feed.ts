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

export interface ChangeFeed {
  /** True while changes from other servers are being received. */
  readonly up: boolean;
  /** Emits 'change' (payload: string), 'up' and 'down'. */
  readonly events: EventEmitter;
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
  private client: pg.Client | null = null;
  private closed = false;
  private retryMs = 250;
  private timer: NodeJS.Timeout | null = null;
  up = false;

  constructor(private readonly connectionString: string) {}

  /** Connects and listens; resolves once listening (or after the first failure, retrying in the background). */
  async start(): Promise<void> {
    await this.connect();
  }

  async publish(executor: Kysely<Database> | Transaction<Database>, payload: string): Promise<void> {
    await sql`select pg_notify(${CHANGE_CHANNEL}, ${payload})`.execute(executor);
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
    const client = new pg.Client({ connectionString: this.connectionString });
    const lost = () => {
      if (this.client !== client) return;
      this.client = null;
      this.setUp(false);
      client.end().catch(() => {});
      this.scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (msg) => {
      if (msg.channel === CHANGE_CHANNEL && msg.payload) this.events.emit('change', msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      this.scheduleReconnect();
      return;
    }
    if (this.closed) {
      await client.end().catch(() => {});
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
    this.retryMs = Math.min(this.retryMs * 2, 10_000);
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    this.events.emit(up ? 'up' : 'down');
  }
}
