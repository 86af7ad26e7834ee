// (r1)/(r2): the KEK rewrap job, timed in this process on PostgreSQL and on PGlite.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BenchError, info } from '../common.mjs';
import { fmtInt } from '../report.mjs';
import { countDeksNotUnder, seedSecrets } from './seed.mjs';

/**
 * Runs Coffer in this process over `storage` (jobs off), seeds `count` secrets in bulk with the
 * server's keyring (real DEKs wrapped under KEK v1; see seed.mjs), rotates the namespace's KEK and times the
 * real rewrap job (KekLifecycle.runRewrapJobs) moving every DEK to v2; then checks that every
 * DEK moved and that a sample decrypts to what was written.
 */
export async function measureRewrap(scenario, storage, count, opts) {
  const dist = (file) => pathToFileURL(path.join(path.dirname(opts.serverMain), file)).href;
  const { loadConfig } = await import(dist('config.js'));
  const { createLogger } = await import(dist('log.js'));
  const { startServer } = await import(dist('server.js'));
  info(`${scenario.label}: seeding ${fmtInt(count)} secrets`);
  const config = loadConfig({}, { host: '127.0.0.1', port: 0, logLevel: 'warn', kekRunJobs: false, ...storage });
  const server = await startServer(config, createLogger('warn'));
  try {
    const core = server.core;
    const init = await core.init(1, 1);
    await core.unseal(init.shares[0]);
    const services = core.services();
    await services.namespaces.create('rewrap');
    const ns = await services.namespaces.resolve('rewrap');
    const pathOf = (i) => `app/${String(i).padStart(7, '0')}`;
    const seedStarted = performance.now();
    await seedSecrets({ storage: server.storage, keyring: services.keyring, namespaceId: ns.id, count, pathOf, valueOf: (i) => ({ value: `v${i}` }) });
    info(`  seeded in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s; rotating and rewrapping (batch ${config.kekRewrapBatchSize} secrets)`);
    const rotation = await services.namespaces.rotateKek('rewrap');
    if (rotation.deks_to_rewrap !== count) throw new BenchError(`${scenario.label}: expected ${count} DEKs to rewrap, rotation reports ${rotation.deks_to_rewrap}`);
    const t0 = performance.now();
    await services.kek.runRewrapJobs();
    const seconds = (performance.now() - t0) / 1000;
    const status = await services.kek.status('rewrap');
    const problems = [];
    if (status.rewrap?.state !== 'completed' || status.rewrap.rewrapped !== count) {
      problems.push(`job did not complete: ${JSON.stringify(status.rewrap)}`);
    }
    const n = await countDeksNotUnder(server.storage, 2);
    if (n !== 0) problems.push(`${n} DEKs are still under the old KEK version`);
    for (let k = 0; k < 200; k++) {
      const i = Math.floor(Math.random() * count);
      const read = await services.secrets.read('rewrap', pathOf(i));
      if (read.data.value !== `v${i}`) problems.push(`${pathOf(i)} read back wrong after the rewrap`);
    }
    const rate = count / seconds;
    info(`  ${fmtInt(count)} DEKs in ${seconds.toFixed(2)} s = ${fmtInt(rate)} DEKs/s${problems.length ? `; PROBLEMS: ${problems.join('; ')}` : ''}`);
    return { deks: count, seconds, deksPerSecond: rate, batchSize: config.kekRewrapBatchSize, problems };
  } finally {
    await server.stop();
  }
}

