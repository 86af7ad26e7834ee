/**
 * Per-request observation: Prometheus request metrics and the request log.
 * Both name the route template (the route table's, see route-template.ts), never the raw path,
 * query string or body. The work is done once, when the response finishes.
 */
import type { Request, Response } from 'express';
import type { Logger } from 'pino';
import type { CofferMetrics } from '../ops/metrics.js';
import { matchOf } from './route-template.js';

export interface ObserveOptions {
  metrics?: CofferMetrics | undefined;
  /** Log every request at info; otherwise requests are logged only at debug. */
  requestLog?: boolean | undefined;
}

export function requestObserver(logger: Logger, options: ObserveOptions): (req: Request, res: Response) => void {
  const { metrics, requestLog = false } = options;
  return (req, res) => {
    const level = requestLog ? 'info' : logger.isLevelEnabled('debug') ? 'debug' : null;
    if (!metrics && !level) return;
    const start = performance.now();
    // A closure rather than properties on `res`: new properties on every response would
    // change its hidden class and slow express down more than this allocation costs.
    res.on('finish', () => {
      const seconds = (performance.now() - start) / 1e3;
      const route = matchOf(req).template;
      metrics?.observeRequest(req.method, route, res.statusCode, seconds);
      if (level) {
        logger[level](
          { requestId: res.locals.requestId as string, method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1e6) / 1e3 },
          'request',
        );
      }
    });
  };
}
