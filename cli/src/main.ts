#!/usr/bin/env node
/** `coffer`: parse, run one command, map the outcome to an exit code (see errors.ts). */
import { CofferError } from '@coffer/sdk';
import { EXIT, reportError } from './errors.js';
import { CLI_VERSION } from './context.js';
import { asksVersion, buildProgram } from './program.js';

// `coffer secret list | head -1` closes our stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT.ok);
  throw err;
});

try {
  if (asksVersion(process.argv.slice(2))) process.stdout.write(`${CLI_VERSION}\n`);
  else await (await buildProgram(process.argv.slice(2))).parseAsync(process.argv);
} catch (err) {
  const hint = err instanceof CofferError && err.status === 0 ? await (await import('./network-hints.js')).networkHint(err) : undefined;
  const code = reportError(err, (text) => process.stderr.write(text), hint);
  // Set, not process.exit(): stdout may still be flushing.
  process.exitCode = code;
}
