/**
 * Where secret input comes from: stdin, files and a prompt that does not echo.
 * Values never have to appear on the command line (shell history, `ps`), and
 * no error message here repeats a value or a file's content.
 */
import { readFile } from 'node:fs/promises';
import type { SecretData } from '@coffer/sdk';
import { CliError, usageError } from './errors.js';

let stdinConsumed = false;

/** All of stdin, once per process: a second reader would silently get nothing. */
export async function readStdin(): Promise<string> {
  if (stdinConsumed) throw usageError('stdin can supply only one value per command');
  stdinConsumed = true;
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads a line from the terminal without echoing it. */
export function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  // Echo off before the prompt shows: a reply typed the moment it appears must not be echoed.
  stdin.setRawMode(true);
  process.stderr.write(question);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          finish();
          reject(new CliError('cancelled', 130));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** One value from stdin: prompted for without echo on a terminal, else read whole, minus one final newline (as `echo` adds). */
export async function readSecretFromStdin(question: string): Promise<string> {
  if (process.stdin.isTTY) {
    stdinConsumed = true;
    return promptHidden(question);
  }
  return (await readStdin()).replace(/\r?\n$/, '');
}

/** A file's exact content (PEM and SSH keys need their final newline). */
async function readValueFile(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    // The file name is left out: with a mistyped `KEY=@value` it would be part of the value.
    const reason = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new CliError(`cannot read the file given for ${what} (${reason})`);
  }
}

/**
 * Builds secret data from `--data-file` (a JSON object, '-' for stdin) and
 * KEY=VALUE, KEY=@FILE and KEY=- arguments; arguments override the file.
 */
export async function collectData(pairs: string[], dataFile: string | undefined): Promise<SecretData> {
  const fromStdin = pairs.filter((p) => p.endsWith('=-') && p.indexOf('=') === p.length - 2).length + (dataFile === '-' ? 1 : 0);
  if (fromStdin > 1) throw usageError('stdin can supply only one value (KEY=- or --data-file -) per command');

  const data: SecretData = {};
  if (dataFile !== undefined) {
    const text = dataFile === '-' ? await readStdin() : await readValueFile(dataFile, '--data-file');
    Object.assign(data, parseDataJson(text));
  }
  const seen = new Set<string>();
  for (const [i, pair] of pairs.entries()) {
    const eq = pair.indexOf('=');
    // The argument is not echoed: it may be a value typed in the wrong place.
    if (eq <= 0) throw usageError(`data argument ${i + 1} is not KEY=VALUE, KEY=@FILE or KEY=-`);
    const key = pair.slice(0, eq);
    const spec = pair.slice(eq + 1);
    if (seen.has(key)) throw usageError(`"${key}" is given twice`);
    seen.add(key);
    if (spec === '-') {
      data[key] = await readSecretFromStdin(`Value for ${key}: `);
      // An empty stdin is far more often a broken pipe upstream than a wanted empty value (that is KEY=).
      if (data[key] === '') throw usageError(`stdin gave no value for "${key}"`);
    }
    else if (spec.startsWith('@')) data[key] = await readValueFile(spec.slice(1), `"${key}"`);
    else data[key] = spec;
  }
  if (Object.keys(data).length === 0) throw usageError('no data: give KEY=VALUE, KEY=@FILE, KEY=- or --data-file');
  return data;
}

function parseDataJson(text: string): SecretData {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the input, which is secret.
    throw usageError('--data-file is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw usageError('--data-file must hold a JSON object of string values');
  }
  const data: SecretData = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') throw usageError(`--data-file: the value of "${key}" is not a string`);
    data[key] = value;
  }
  return data;
}

/** Reads one echoed line from the terminal (a username, not a secret). */
export async function promptLine(question: string): Promise<string> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/**
 * Shares (unseal, recovery or new ones), one per line or separated by blanks:
 * from FILE ('-' = stdin), else prompted for, unechoed, `count` times on a
 * terminal, else all of stdin. Never from arguments (shell history, ps).
 */
export async function readShares(file: string | undefined, count: number, label: string): Promise<string[]> {
  let text: string;
  if (file !== undefined && file !== '-') text = await readValueFile(file, '--shares-file');
  else if (file === undefined && process.stdin.isTTY) {
    stdinConsumed = true;
    const shares: string[] = [];
    for (let i = 1; i <= count; i++) shares.push((await promptHidden(`${label} ${i}/${count}: `)).trim());
    text = shares.join('\n');
  } else text = await readStdin();
  const shares = text.split(/\s+/).filter(Boolean);
  if (!shares.length) throw usageError(`no ${label.toLowerCase()}s given`);
  return shares;
}
