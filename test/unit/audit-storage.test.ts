// What the audit log writes is always storable and whole: text PostgreSQL cannot hold is escaped,
// and a file sink never keeps a partial line.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storable, storableText } from '@coffer/server/audit/storable';
import { FileSink } from '@coffer/server/audit/sinks';

describe('storable audit text', () => {
  it.each([
    ['plain', 'plain'],
    ['x\u0000', 'x\\u0000'],
    ['\u0000\u0000', '\\u0000\\u0000'],
    ['a\ud800', 'a\\ud800'],
    ['\udc00b', '\\udc00b'],
    ['\udc00\ud800', '\\udc00\\ud800'],
    ['key-\u{1F511}', 'key-\u{1F511}'],
    ['\u{1F511}\ud83d', '\u{1F511}\\ud83d'],
    ['back\\slash', 'back\\slash'],
  ])('%j → %j', (input, output) => {
    expect(storableText(input)).toBe(output);
    expect(Buffer.from(storableText(input), 'utf8').toString('utf8')).toBe(output);
  });

  it('escapes keys and nested values, and returns untouched values as they are', () => {
    const clean = { a: 'x', b: { c: ['y', 1, null] }, when: new Date(0) };
    expect(storable(clean)).toBe(clean);
    expect(storable({ a: 'x\u0000', b: { 'k\u0000': ['\ud800', 2] }, when: clean.when })).toEqual({ a: 'x\\u0000', b: { 'k\\u0000': ['\\ud800', 2] }, when: clean.when });
  });
});

describe('file sink', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-sink-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trims a torn last line (a crash mid-write) before writing on', async () => {
    const file = join(dir, 'torn.log');
    writeFileSync(file, '{"seq":1}\n{"seq":2}\n{"seq":3,"pa');
    const sink = new FileSink(file);
    await sink.write('{"seq":3}\n');
    await sink.close();
    expect(readFileSync(file, 'utf8')).toBe('{"seq":1}\n{"seq":2}\n{"seq":3}\n');
  });

  it('keeps a file of whole lines as it is, and starts an empty or newline-less one from scratch', async () => {
    const whole = join(dir, 'whole.log');
    writeFileSync(whole, '{"seq":1}\n');
    const a = new FileSink(whole);
    await a.write('{"seq":2}\n');
    await a.close();
    expect(readFileSync(whole, 'utf8')).toBe('{"seq":1}\n{"seq":2}\n');
    const torn = join(dir, 'no-newline.log');
    writeFileSync(torn, '{"se');
    const b = new FileSink(torn);
    await b.write('{"seq":1}\n');
    await b.close();
    expect(readFileSync(torn, 'utf8')).toBe('{"seq":1}\n');
  });
});
