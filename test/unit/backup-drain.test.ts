// GET /v1/sys/backup waits for 'drain' (or 'close') after each write a slow client holds back. Each
// wait must leave no listener behind: one per wait piled up 'close' listeners on the response (a
// MaxListenersExceededWarning and a leak that grew with the backup).
import { Writable } from 'node:stream';
import { writable } from '@coffer/server/http/routes/backup';

it('waiting for drain many times leaves no drain or close listener behind', async () => {
  const sink = new Writable({ highWaterMark: 4, write: (_chunk, _enc, done) => setImmediate(done) });
  const before = { drain: sink.listenerCount('drain'), close: sink.listenerCount('close') };
  for (let i = 0; i < 50; i++) {
    expect(sink.write(Buffer.alloc(16))).toBe(false);
    await writable(sink);
  }
  expect({ drain: sink.listenerCount('drain'), close: sink.listenerCount('close') }).toEqual(before);
});
