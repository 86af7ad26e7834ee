/**
 * Prometheus metrics (prom-client), served on GET /v1/sys/metrics and, when
 * configured, on a separate unauthenticated listener.
 *
 * Per-request work is one counter increment and one histogram observation on
 * a child looked up by (method, status, route template); everything else is
 * read from its source when scraped. Labels are route templates, never raw
 * paths or namespace names.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CofferCore } from '../core.js';
import type { JobObserver } from '../jobs/scheduler.js';
import type { KmsKeyCacheStats } from '../kms/named-keys/key-cache.js';

/** The KEK cache's size and lifetime hit/miss counts (keyring/keyring.ts `cacheStats`). */
export interface KekCacheStats {
  size: number;
  hits: number;
  misses: number;
}

/** Connection pool use (storage/db.ts `poolStats`). */
export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
  max: number;
}

/** Where the metrics read from, handed in by app/compose.ts. */
export interface MetricsSources {
  core: CofferCore;
  /**
   * The live keyring's KEK cache (undefined while sealed). Each unseal builds a new
   * keyring whose counters start at zero; a new object here means a new keyring.
   */
  kekCache: () => { cacheStats(): KekCacheStats } | undefined;
  /** The live named-key cache (kms/named-keys/key-cache.ts; undefined while sealed; a new one per unseal). */
  kmsKeyCache?: (() => { stats(): KmsKeyCacheStats } | undefined) | undefined;
  /** Connection pool use (PostgreSQL only). */
  poolStats?: (() => PoolStats) | undefined;
}

/** Node.js process metrics are per process, so they live in one registry shared by every server in it. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface RequestSeries {
  labels: { method: string; route: string; status: string };
  /** Requests answered; published to the counter when scraped (cheaper than prom-client's inc per request). */
  count: number;
  duration: Histogram.Internal<'method' | 'route' | 'status'>;
}

export class CofferMetrics {
  readonly registry = new Registry();
  private readonly durations: Histogram<'method' | 'route' | 'status'>;
  /** Children by `method status route`: a Map lookup is cheaper than prom-client's label hashing. */
  private readonly series = new Map<string, RequestSeries>();
  /** Where the job scheduler counts runs; one per server, so the counts go on across seal/unseal. */
  readonly jobs: JobObserver;

  constructor(sources: MetricsSources) {
    const { core } = sources;
    const registers = [this.registry];
    const series = this.series;
    new Counter({
      name: 'coffer_http_requests_total',
      help: 'HTTP requests answered, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      registers,
      collect() {
        this.reset();
        for (const s of series.values()) this.inc(s.labels, s.count);
      },
    });
    this.durations = new Histogram({
      name: 'coffer_http_request_duration_seconds',
      help: 'Time from receiving a request to finishing its response, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: DURATION_BUCKETS,
      registers,
    });

    // Per node: every server serves its own /v1/sys/metrics; these say which one it is and which
    // background jobs it is running (each runs on one server at a time, under a cluster-wide lock).
    new Gauge({
      name: 'coffer_node_info',
      help: 'Always 1; the node label is the server\'s id (as in /v1/sys/health)',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        this.set({ node: core.node }, 1);
      },
    });
    new Gauge({
      name: 'coffer_job_ran_here',
      help: '1 when this server ran the job\'s last run (held its lock), 0 when another server held it',
      labelNames: ['job'],
      registers,
      collect() {
        this.reset();
        for (const job of core.jobs()) if (job.last !== null) this.set({ job: job.name }, job.last === 'busy' ? 0 : 1);
      },
    });
    new Gauge({
      name: 'coffer_initialized',
      help: '1 when the server is initialised (a root key exists), else 0',
      registers,
      collect() {
        this.set(core.status().initialized ? 1 : 0);
      },
    });
    new Gauge({
      name: 'coffer_sealed',
      help: '1 while the server is sealed (no key in memory), else 0',
      registers,
      collect() {
        this.set(core.isSealed ? 1 : 0);
      },
    });

    const kek = new CarriedTotals(sources.kekCache, (k) => k.cacheStats(), ['hits', 'misses'] as const);
    new Gauge({
      name: 'coffer_kek_cache_entries',
      help: 'Unwrapped namespace keys (KEK versions) held in memory',
      registers,
      collect() {
        this.set(kek.current()?.size ?? 0);
      },
    });
    new Counter({
      name: 'coffer_kek_cache_hits_total',
      help: 'KEK lookups answered from memory',
      registers,
      collect() {
        this.reset();
        this.inc(kek.totals().hits);
      },
    });
    new Counter({
      name: 'coffer_kek_cache_misses_total',
      help: 'KEK lookups that had to unwrap the key with the root key',
      registers,
      collect() {
        this.reset();
        this.inc(kek.totals().misses);
      },
    });
    const kmsSource = sources.kmsKeyCache;
    if (kmsSource) {
      const kmsKeys = new CarriedTotals(kmsSource, (c) => c.stats(), ['hits', 'misses', 'evictedCapacity', 'evictedExpired'] as const);
      new Gauge({
        name: 'coffer_kms_key_cache_entries',
        help: 'Named KMS keys (row and unwrapped versions) held in memory',
        registers,
        collect() {
          this.set(kmsKeys.current()?.size ?? 0);
        },
      });
      const total = (name: string, help: string, pick: 'hits' | 'misses') =>
        new Counter({
          name,
          help,
          registers,
          collect() {
            this.reset();
            this.inc(kmsKeys.totals()[pick]);
          },
        });
      total('coffer_kms_key_cache_hits_total', 'Named-key lookups answered from memory', 'hits');
      total('coffer_kms_key_cache_misses_total', 'Named-key lookups that went to the database (and then a KEK unwrap)', 'misses');
      new Counter({
        name: 'coffer_kms_key_cache_evictions_total',
        help: 'Named keys dropped from memory other than by a change: reason "capacity" (size bound) or "expired" (TTL)',
        labelNames: ['reason'],
        registers,
        collect() {
          this.reset();
          const t = kmsKeys.totals();
          this.inc({ reason: 'capacity' }, t.evictedCapacity);
          this.inc({ reason: 'expired' }, t.evictedExpired);
        },
      });
    }
    new Gauge({
      name: 'coffer_secret_read_cache_entries',
      help: 'Latest encrypted secret versions held in memory for reads',
      registers,
      collect() {
        this.set(core.readCache.size);
      },
    });
    new Gauge({
      name: 'coffer_secret_read_cache_value_bytes',
      help: 'Bytes of decrypted values kept with cached reads and bulk-read pages (bounded by COFFER_SECRET_CACHE_VALUE_BYTES)',
      registers,
      collect() {
        this.set(core.readCache.heldValueBytes);
      },
    });
    new Gauge({
      name: 'coffer_audit_queue_depth',
      help: 'Audit entries accepted but not yet written',
      registers,
      collect() {
        this.set(core.audit.queueDepth);
      },
    });

    const jobRuns = new Counter({
      name: 'coffer_job_runs_total',
      help: 'Background job runs on this server (runs that held the job\'s cluster-wide lock), by job',
      labelNames: ['job'],
      registers,
    });
    const jobFailures = new Counter({
      name: 'coffer_job_failures_total',
      help: 'Background job runs that failed (retried with back-off), by job',
      labelNames: ['job'],
      registers,
    });
    const jobDuration = new Gauge({
      name: 'coffer_job_last_duration_seconds',
      help: 'How long the last run of a background job on this server took, by job',
      labelNames: ['job'],
      registers,
    });
    this.jobs = {
      observe(job, outcome, seconds) {
        jobRuns.inc({ job });
        if (outcome === 'failed') jobFailures.inc({ job });
        jobDuration.set({ job }, seconds);
      },
    };

    const poolStats = sources.poolStats;
    if (poolStats) {
      const pool = (name: string, help: string, pick: (s: PoolStats) => number) =>
        new Gauge({
          name,
          help,
          registers,
          collect() {
            this.set(pick(poolStats()));
          },
        });
      pool('coffer_db_pool_connections', 'PostgreSQL connections open (idle or in use)', (s) => s.total);
      pool('coffer_db_pool_idle_connections', 'PostgreSQL connections open and idle', (s) => s.idle);
      pool('coffer_db_pool_waiting_requests', 'Queries waiting for a PostgreSQL connection', (s) => s.waiting);
      pool('coffer_db_pool_max_connections', 'Configured PostgreSQL pool size (COFFER_DB_POOL_SIZE)', (s) => s.max);
    }
  }

  /** Called once per finished request. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let s = this.series.get(key);
    if (!s) {
      const labels = { method, route, status: String(status) };
      s = { labels, count: 0, duration: this.durations.labels(labels) };
      this.series.set(key, s);
    }
    s.count++;
    s.duration.observe(seconds);
  }

  /** The text exposition of Coffer's and the process's metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    const merged = Registry.merge([processMetrics(), this.registry]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }
}

/**
 * Cache counters that keep counting across seal/unseal: each unseal builds a
 * new cache (the keyring's KEK cache, the named-key cache) whose counters
 * start at zero, so the last one's final counts are carried over when it is
 * replaced (a replaced cache's counters stay readable after it is closed).
 */
class CarriedTotals<O, K extends string, S extends { size: number } & Record<K, number>> {
  private last: O | undefined;
  private readonly carried: Record<K, number>;

  constructor(
    private readonly source: () => O | undefined,
    private readonly stats: (cache: O) => S,
    private readonly keys: readonly K[],
  ) {
    this.carried = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
  }

  /** The live cache's stats; undefined while sealed. */
  current(): S | undefined {
    const cache = this.source();
    if (cache !== this.last) {
      if (this.last) {
        const final = this.stats(this.last);
        for (const k of this.keys) this.carried[k] += final[k];
      }
      this.last = cache;
    }
    return cache === undefined ? undefined : this.stats(cache);
  }

  totals(): Record<K, number> {
    const now = this.current();
    return Object.fromEntries(this.keys.map((k) => [k, this.carried[k] + (now?.[k] ?? 0)])) as Record<K, number>;
  }
}
