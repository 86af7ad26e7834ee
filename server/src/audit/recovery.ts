/**
 * Turns audit intents whose requests never wrote their own entry into entries
 * (outcome "unknown"): at start-up, before the server listens (a dead
 * process's intents), then periodically (failed appends of this process, and
 * intents old enough that their request cannot still be running).
 */
import type { Logger } from 'pino';
import type { AuditDraft } from './entry.js';
import type { AuditIntents } from './intents.js';

const BATCH = 500;
const REASON =
  'recovered from the intent the request recorded before it ran: its own entry was never written (the audit append failed or the server stopped), so whether its change took effect is not known';

export interface RecoveryOptions {
  /** An intent this old belongs to a request that is over. */
  recoverAfterMs: number;
  /** No other process uses the database: an earlier process's intents are due at once. */
  exclusive: boolean;
}

type Append = (draft: AuditDraft, options: { intent: true; time: Date }) => Promise<void>;

export class IntentRecovery {
  /** This process's requests whose intent outlived a failed append: the next pass takes them. */
  readonly orphans = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;

  constructor(
    private readonly intents: AuditIntents,
    private readonly append: Append,
    private readonly logger: Logger,
    private readonly options: RecoveryOptions,
  ) {}

  /** A first pass now, then one at least every 30 s. */
  async start(): Promise<void> {
    if (this.timer) return;
    await this.runLogged();
    this.timer = setInterval(() => void this.runLogged(), Math.min(this.options.recoverAfterMs, 30_000));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  runLogged(): Promise<number> {
    return this.run().catch((err: unknown) => {
      this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'audit intent recovery failed');
      return 0;
    });
  }

  /** Appends an entry for every intent that is due; returns how many. One pass at a time. */
  run(): Promise<number> {
    this.running ??= this.pass().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async pass(): Promise<number> {
    let recovered = 0;
    for (;;) {
      const requestIds = [...this.orphans];
      const claimed = await this.intents.claim({ requestIds, olderThanMs: this.options.recoverAfterMs, exclusive: this.options.exclusive, limit: BATCH });
      for (const id of requestIds) this.orphans.delete(id);
      if (claimed.length === 0) return recovered;
      const results = await Promise.allSettled(
        claimed.map(({ time, draft }) => this.append({ ...draft, outcome: 'unknown', status: 0, error_code: null, reason: REASON }, { intent: true, time })),
      );
      let failed = 0;
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') return void recovered++;
        failed++;
        // Claimed by us: the next pass takes it again.
        this.orphans.add(claimed[i]!.requestId);
      });
      this.logger.warn({ recovered: claimed.length - failed, failed }, 'audit entries recovered from intents whose requests never wrote their own');
      if (failed > 0 || claimed.length < BATCH) return recovered;
    }
  }
}
