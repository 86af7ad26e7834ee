// Middlewares run as one express layer (http/in-sequence.ts) keep express's rules: in order,
// an error (passed, thrown or a rejected promise) skips the rest, the last next() goes on.
import type { Request, RequestHandler, Response } from 'express';
import { inSequence } from '@coffer/server/http/in-sequence';

const req = {} as Request;
const res = {} as Response;

function run(handlers: RequestHandler[]): Promise<{ ran: string[]; err: unknown }> {
  const ran: string[] = [];
  const named = handlers.map((h, i): RequestHandler => (rq, rs, next) => {
    ran.push(`h${i}`);
    return h(rq, rs, next);
  });
  return new Promise((resolve) => inSequence(named)(req, res, (err?: unknown) => resolve({ ran, err })));
}

describe('inSequence', () => {
  const pass: RequestHandler = (_rq, _rs, next) => next();

  it('runs every handler in order, then goes on', async () => {
    const later: RequestHandler = (_rq, _rs, next) => void setImmediate(() => next());
    expect(await run([pass, later, pass])).toEqual({ ran: ['h0', 'h1', 'h2'], err: undefined });
  });

  it('skips the rest on next(err), a throw or a rejected promise', async () => {
    const boom = new Error('boom');
    expect(await run([pass, (_rq, _rs, next) => next(boom), pass])).toEqual({ ran: ['h0', 'h1'], err: boom });
    expect(
      await run([
        () => {
          throw boom;
        },
        pass,
      ]),
    ).toEqual({ ran: ['h0'], err: boom });
    expect(await run([async () => Promise.reject(boom), pass])).toEqual({ ran: ['h0'], err: boom });
  });
});
