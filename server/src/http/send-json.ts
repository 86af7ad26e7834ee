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
  if (req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined) {
    res.json(body);
    return;
  }
  const text = JSON.stringify(body);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}
