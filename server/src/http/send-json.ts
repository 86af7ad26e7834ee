/** The read path's JSON answer (a module of its own: the route files import it, and nothing here imports them). */
import type { Request, Response } from 'express';

/**
 * `res.json(body)` with the same status, headers and bytes, without express's
 * send machinery (content-type lookup and charset rewrite, the freshness
 * check): for the hottest reads, where that machinery is a few per cent of the
 * request's CPU. A conditional request still goes through express, so its
 * answer (a 304) is exactly what it was.
 */
export function sendJson(req: Request, res: Response, body: unknown): void {
  if (isConditional(req)) {
    res.json(body);
    return;
  }
  endJson(res, JSON.stringify(body));
}

/** res.json's two headers for JSON text, then the text. */
function endJson(res: Response, text: string | Buffer): void {
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** A conditional request: express answers it (a 304 when fresh), so it gets `res.json`. */
export function isConditional(req: Request): boolean {
  return req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined;
}

/**
 * Sends JSON text the response owns with sendJson's headers, and zeroes it once the socket has
 * taken it (or the response is abandoned): `res.end` may be held until the audit entry is durable,
 * so the bytes must stay intact until then, and no one else may zero them.
 */
export function sendOwnedJson(res: Response, text: Buffer): void {
  res.once('close', () => text.fill(0));
  endJson(res, text);
}
