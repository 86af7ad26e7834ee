/**
 * Several express middlewares run as one. Each express layer a request passes
 * costs a visible share of a small request's CPU (matching, `next`
 * bookkeeping); the handlers every request passes need none of it.
 */
import type { RequestHandler } from 'express';

/**
 * Runs `handlers` one after the other as ONE middleware, with express's rules:
 * `next(err)`, a throw or a rejected promise skips the rest and goes on to the
 * error handlers; `next()` from the last one goes on to what follows.
 */
export function inSequence(handlers: readonly RequestHandler[]): RequestHandler {
  return (req, res, next) => {
    let i = 0;
    const step = (err?: unknown): void => {
      if (err !== undefined && err !== null) return next(err);
      const handler = handlers[i++];
      if (!handler) return next();
      try {
        const out: unknown = handler(req, res, step);
        // express 5 also takes a rejected promise from a handler as its error.
        if (out instanceof Promise) out.catch((e: unknown) => next(e ?? new Error('rejected')));
      } catch (e) {
        next(e);
      }
    };
    step();
  };
}
