// Which database failures mean "the database is away, retry" (503 + Retry-After) rather than a
// bug (500): connection-class SQLSTATEs, socket errors and the driver's own connection messages.
import net from 'node:net';
import pg from 'pg';
import { isConnectionError } from '@coffer/server/storage/errors';
import { toCofferError } from '@coffer/server/http/respond';
import { httpStatus } from '@coffer/server/http/status';
import { classifyStorageError } from '@coffer/server/app/storage-errors';

const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code, severity: 'FATAL' });

describe('isConnectionError', () => {
  it.each([
    ['57P01', 'terminating connection due to administrator command'],
    ['57P02', 'terminating connection due to crash of another server process'],
    ['57P03', 'the database system is starting up'],
    ['57P03', 'the database system is shutting down'],
    ['08006', 'connection failure'],
    ['08001', 'could not connect'],
    ['08P01', 'protocol violation'],
    ['53300', 'sorry, too many clients already'],
    ['ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'],
    ['ECONNRESET', 'read ECONNRESET'],
    ['ETIMEDOUT', 'connect ETIMEDOUT'],
    ['EAI_AGAIN', 'getaddrinfo EAI_AGAIN db'],
  ])('%s (%s) is a connection error', (code, message) => {
    expect(isConnectionError(pgError(code, message))).toBe(true);
  });

  it.each([
    'Connection terminated unexpectedly',
    'Connection terminated',
    'Connection terminated due to connection timeout',
    'timeout exceeded when trying to connect',
    'Client has encountered a connection error and is not queryable',
    'Client was closed and is not queryable',
    'Postgres connection has been discarded',
  ])('the driver message "%s" is a connection error', (message) => {
    expect(isConnectionError(new Error(message))).toBe(true);
  });

  it('follows the cause chain', () => {
    expect(isConnectionError(new Error('wrapped', { cause: pgError('ECONNREFUSED') }))).toBe(true);
  });

  it.each([
    ['23505', 'unique violation'],
    ['23503', 'foreign key violation'],
    ['40001', 'serialization failure'],
    ['42P01', 'relation does not exist'],
    ['57014', 'canceling statement due to statement timeout'],
  ])('%s (%s) is not', (code, message) => {
    expect(isConnectionError(pgError(code, message))).toBe(false);
  });

  it('nor are bugs and non-errors', () => {
    expect(isConnectionError(new Error('boom'))).toBe(false);
    expect(isConnectionError(new TypeError('Cannot read properties of undefined'))).toBe(false);
    expect(isConnectionError(null)).toBe(false);
    expect(isConnectionError(undefined)).toBe(false);
    expect(isConnectionError('Connection terminated unexpectedly')).toBe(false);
  });

  it('recognises what pg really throws when nothing listens on the port', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const pool = new pg.Pool({ connectionString: `postgres://nobody@127.0.0.1:${port}/none`, connectionTimeoutMillis: 5_000 });
    const err = await pool.query('select 1').then(
      () => null,
      (e: unknown) => e,
    );
    await pool.end();
    expect(err).not.toBeNull();
    expect(isConnectionError(err)).toBe(true);
  });

  it('recognises a connection that opens but never answers (connect timeout)', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    const pool = new pg.Pool({ connectionString: `postgres://nobody@127.0.0.1:${port}/none`, connectionTimeoutMillis: 200 });
    const err = await pool.query('select 1').then(
      () => null,
      (e: unknown) => e,
    );
    await pool.end();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent.close(resolve));
    expect(isConnectionError(err)).toBe(true);
  });
});

describe('HTTP mapping of database failures', () => {
  it('a connection error is 503 unavailable with a Retry-After', () => {
    const mapped = toCofferError(pgError('57P01', 'terminating connection due to administrator command'), 1024, classifyStorageError);
    expect({ status: httpStatus(mapped!), code: mapped!.code }).toMatchObject({ status: 503, code: 'unavailable' });
    expect(mapped!.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    // Nothing of the driver's message reaches the client.
    expect(mapped!.message).not.toMatch(/administrator/);
  });

  it('an aborted upload (code ECONNABORTED from the body parser) stays the client\'s 400', () => {
    const aborted = Object.assign(new Error('request aborted'), { type: 'request.aborted', code: 'ECONNABORTED', status: 400 });
    const mapped = toCofferError(aborted, 1024, classifyStorageError);
    expect({ status: httpStatus(mapped!), code: mapped!.code }).toMatchObject({ status: 400, code: 'invalid_request' });
  });

  it('other database errors are still unmapped (a 500 and a log line)', () => {
    expect(toCofferError(pgError('42P01', 'relation "x" does not exist'), 1024, classifyStorageError)).toBeNull();
  });
});
