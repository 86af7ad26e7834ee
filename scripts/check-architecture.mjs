#!/usr/bin/env node
// Prints every import of server/src that runs against the layers and every file outside
// server/src/storage/ that writes SQL; exits 1 if one is not in scripts/lib/architecture-allowlist.mjs.
// `npm test` runs the same check (test/unit/architecture.test.ts).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as allow from './lib/architecture-allowlist.mjs';
import { checkArchitecture, formatReport, readSources } from './lib/architecture.mjs';

const srcDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'server', 'src');
const result = checkArchitecture(readSources(srcDir), allow);
process.stdout.write(`${formatReport(result)}\n`);
process.exitCode = result.newLayer.length + result.newSql.length > 0 ? 1 : 0;
