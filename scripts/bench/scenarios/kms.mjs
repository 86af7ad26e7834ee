// The KMS scenarios (issue 14) on the (b1) server, so that their ratios to a secret read come
// from one run on one server: (k1) encrypt 1 KiB, (k2) a data key (plaintext mode, 256 bits),
// (k3) sign with an Ed25519 key, (k4) a batch of 1,000 encrypts of 256 B each (one request; its
// latency and the server's CPU time per request are per batch). Root token, like (b1).
import { randomBytes } from 'node:crypto';
import { fmtMs, fmtRatio } from '../report.mjs';
import { scenario } from '../options.mjs';
import { api } from '../servers.mjs';

export const KMS_IDS = ['k1', 'k2', 'k3', 'k4'];
export const KMS_NAMESPACE = 'bench-kms';
export const KMS_BATCH_ITEMS = 1000;
/** The aims from the issue: k1 and k2 within 10% of (b1); k3 ≥ 5,000/s; k4 under 30 ms p50 server time. */
export const KMS_AIMS = { ratio: 0.9, signPerSecond: 5000, batchServerMs: 30 };

const post = (server, urlPath, body) => ({
  url: server.base + urlPath,
  method: 'POST',
  headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

/** Creates the namespace and keys; returns the request of each scenario. */
export async function kmsRequests(server) {
  const { base, token } = server;
  await api(base, 'POST', '/v1/namespaces', { token, body: { name: KMS_NAMESPACE }, expect: [201, 409] });
  await api(base, 'POST', `/v1/kms/${KMS_NAMESPACE}/keys/data`, { token, body: { type: 'aes256-gcm' }, expect: [201, 409] });
  await api(base, 'POST', `/v1/kms/${KMS_NAMESPACE}/keys/release`, { token, body: { type: 'ed25519' }, expect: [201, 409] });
  const items = Array.from({ length: KMS_BATCH_ITEMS }, () => ({ plaintext: randomBytes(256).toString('base64') }));
  return {
    k1: post(server, `/v1/kms/${KMS_NAMESPACE}/encrypt/data`, { plaintext: randomBytes(1024).toString('base64'), associated_data: 'b3JkZXItNDI=' }),
    k2: post(server, `/v1/kms/${KMS_NAMESPACE}/datakey/plaintext/data`, { bits: 256 }),
    k3: post(server, `/v1/kms/${KMS_NAMESPACE}/sign/release`, { input: randomBytes(64).toString('base64') }),
    k4: post(server, `/v1/kms/${KMS_NAMESPACE}/batch/encrypt/data`, { items }),
  };
}

/** (h2)/(h3): encrypt 1 KiB on the PKCS#11-sealed server, with a software key and with an HSM-resident one. */
export const HSM_KMS_IDS = ['h2', 'h3'];

export async function hsmKmsRequests(server) {
  const { base, token } = server;
  await api(base, 'POST', '/v1/namespaces', { token, body: { name: KMS_NAMESPACE }, expect: [201, 409] });
  await api(base, 'POST', `/v1/kms/${KMS_NAMESPACE}/keys/soft`, { token, body: { type: 'aes256-gcm' }, expect: [201, 409] });
  await api(base, 'POST', `/v1/kms/${KMS_NAMESPACE}/keys/in-hsm`, { token, body: { type: 'aes256-gcm', hsm: true }, expect: [201, 409] });
  const body = { plaintext: randomBytes(1024).toString('base64'), associated_data: 'b3JkZXItNDI=' };
  return {
    h2: post(server, `/v1/kms/${KMS_NAMESPACE}/encrypt/soft`, body),
    h3: post(server, `/v1/kms/${KMS_NAMESPACE}/encrypt/in-hsm`, body),
  };
}

/** The HSM-resident line: (h3) against (h2), the same operation with a software key on the same server. */
export function printHsmKms(results, ratios, out) {
  const h2 = results.get('h2');
  const h3 = results.get('h3');
  if (!h2 || h2.skipped || !h3 || h3.skipped) return;
  ratios.h3_over_h2 = h3.rps / h2.rps;
  out();
  out(`KMS encrypt 1 KiB on the PKCS#11-sealed server: HSM-resident key (h3) ${Math.round(h3.rps)} req/s (p50 ${fmtMs(h3.p50)} ms) vs software key (h2) ${Math.round(h2.rps)} req/s (p50 ${fmtMs(h2.p50)} ms) = ${fmtRatio(ratios.h3_over_h2)}`);
}

/** The KMS lines of the report: each scenario against (b1) of the same run, and the issue's aims (informational). */
export function printKms(results, ratios, out) {
  const b1 = results.get('b1');
  const got = KMS_IDS.map((id) => [id, results.get(id)]).filter(([, r]) => r && !r.skipped);
  if (got.length === 0) return;
  const base = b1 && !b1.skipped ? b1 : null;
  out();
  out(`KMS (issue 14), on the (b1) server in the same run${base ? `; (b1) read ${Math.round(base.rps)} req/s, server CPU ${base.serverCpuMsPerRequest?.toFixed(3) ?? '-'} ms/req` : ''}:`);
  for (const [id, r] of got) {
    // A batch is 1,000 operations per request: its line is per batch, not a ratio to one read.
    if (id === 'k4') {
      out(`  ${scenario(id).label}: ${Math.round(r.rps)} batches/s, server CPU ${r.serverCpuMsPerRequest?.toFixed(1) ?? '-'} ms per batch; p50 ${fmtMs(r.p50)} ms`);
      continue;
    }
    const ratio = base ? r.rps / base.rps : null;
    const cpuRatio = base && r.serverCpuMsPerRequest && base.serverCpuMsPerRequest ? base.serverCpuMsPerRequest / r.serverCpuMsPerRequest : null;
    ratios[`${id}_over_b1`] = ratio;
    ratios[`${id}_over_b1_cpu`] = cpuRatio;
    out(`  ${scenario(id).label}: ${Math.round(r.rps)} req/s = ${fmtRatio(ratio)} × (b1) by req/s, ${fmtRatio(cpuRatio)} × by server CPU per request; p50 ${fmtMs(r.p50)} ms`);
  }
  const k1 = results.get('k1');
  const k2 = results.get('k2');
  const k3 = results.get('k3');
  const k4 = results.get('k4');
  const verdict = (ok) => (ok === null ? 'n/a' : ok ? 'MET' : 'NOT MET');
  if (base && k1 && !k1.skipped) out(`  aim: encrypt within 10% of a read: ${verdict(ratios.k1_over_b1 >= KMS_AIMS.ratio)}`);
  if (base && k2 && !k2.skipped) out(`  aim: datakey within 10% of a read: ${verdict(ratios.k2_over_b1 >= KMS_AIMS.ratio)}`);
  if (k3 && !k3.skipped) out(`  aim: ed25519 sign ≥ ${KMS_AIMS.signPerSecond}/s: ${Math.round(k3.rps)}/s ${verdict(k3.rps >= KMS_AIMS.signPerSecond)}`);
  if (k4 && !k4.skipped) {
    const ms = k4.serverCpuMsPerRequest ?? null;
    out(`  aim: a ${KMS_BATCH_ITEMS}-item batch under ${KMS_AIMS.batchServerMs} ms of server time: ${ms === null ? '-' : ms.toFixed(1)} ms CPU per batch ${verdict(ms === null ? null : ms < KMS_AIMS.batchServerMs)} (client p50 ${fmtMs(k4.p50)} ms, queueing included)`);
  }
  out('  (informational; on a shared, loaded machine compare the ratios, not the absolute numbers)');
}
