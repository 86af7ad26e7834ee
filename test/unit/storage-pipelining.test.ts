// The pipelined client (storage/pipelined-client.ts) subclasses pg's Query and calls its
// connection's message writers: internals, not pg's API. With the pg this repository locks, they
// must be there (so a write takes two round trips, not six); a client whose pg lacks them is left
// as it is (plain pg: one round trip per statement, the same results) instead of being broken.
import pg from 'pg';
import { pipelineTransactions, pipeliningSupported } from '@coffer/server/storage/pipelined-client';

describe('pipelined pg client', () => {
  it('finds the pg internals it builds on in the installed pg (fails on a pg upgrade that changed them)', () => {
    expect(pipeliningSupported).toBe(true);
    const client = new pg.Client();
    const query = client.query;
    expect(pipelineTransactions(client)).toBe(true);
    expect(client.query).not.toBe(query);
  });

  it('leaves a client alone whose connection is not the one it knows (pg-native, a changed pg)', () => {
    const client = new pg.Client();
    (client as unknown as { connection: object }).connection = { parse: () => undefined };
    const query = client.query;
    expect(pipelineTransactions(client)).toBe(false);
    expect(client.query).toBe(query);
  });
});
