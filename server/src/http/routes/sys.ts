/** /v1/sys: initialise, unseal, seal, status, health, readiness, metrics. `seal` and `metrics` need a token. */
import { Router, type RequestHandler } from 'express';
import type { HealthStatus } from '@coffer/sdk/api';
import type { CofferCore } from '../../core.js';
import { CofferError } from '../../errors.js';
import type { CofferMetrics } from '../../ops/metrics.js';
import { isAdmin } from '../../policy/policy.js';
import { principalOf } from '../auth.js';
import { auditDraft } from '../audit.js';
import { emptyQuery, healthQuery, initBody, rotateRootBody, sealMigrateBody, verifyRotateRootBody, unsealBody } from '../schemas.js';

export interface SysOptions {
  /** Serves GET /v1/sys/metrics (admin token) when present. */
  metrics?: CofferMetrics | undefined;
}

/** How long readiness waits for the database to answer `select 1`. */
const READY_DB_TIMEOUT_MS = 1000;

export function sysRouter(core: CofferCore, requireToken: RequestHandler[], options: SysOptions = {}): Router {
  const router = Router({ caseSensitive: true });

  router.get('/seal-status', (req, res) => {
    emptyQuery.parse(req.query);
    res.json(core.status());
  });

  // Load-balancer friendly: 200 active, 503 sealed, 501 not initialised (Vault's codes), each
  // overridable (?sealedcode=200 turns it into a liveness probe). No HA yet: never a standby.
  router.get('/health', (req, res) => {
    const q = healthQuery.parse(req.query);
    const s = core.status();
    const standby = false;
    const status = !s.initialized
      ? (q.uninitcode ?? 501)
      : s.sealed
        ? (q.sealedcode ?? 503)
        : standby && !q.standbyok
          ? (q.standbycode ?? 429)
          : (q.activecode ?? 200);
    res.status(status).json({
      initialized: s.initialized,
      sealed: s.sealed,
      standby,
      server_time_utc: Math.floor(Date.now() / 1000),
    } satisfies HealthStatus);
  });

  // Readiness: may this server take traffic now? Initialised, unsealed, and the database answers.
  router.get('/ready', async (req, res) => {
    emptyQuery.parse(req.query);
    const database = await core.pingDatabase(READY_DB_TIMEOUT_MS);
    const s = core.status();
    const audit = core.audit.enabled ? core.audit.state : undefined;
    const ready = s.initialized && !s.sealed && database === 'ok' && (audit === undefined || audit === 'ok');
    res.status(ready ? 200 : 503).json({
      ready,
      checks: {
        database,
        initialized: s.initialized,
        sealed: s.sealed,
        // A stuck or failing audit sink makes requests fail closed (503): not ready either. "failing"
        // lasts until an audit write succeeds again (one is retried every few seconds).
        ...(audit === undefined ? {} : { audit }),
      },
    });
  });

  const metrics = options.metrics;
  if (metrics) {
    router.get('/metrics', ...requireToken, async (req, res) => {
      if (!isAdmin(principalOf(res))) throw new CofferError('permission_denied', 'metrics need admin rights');
      emptyQuery.parse(req.query);
      const { contentType, body } = await metrics.render();
      res.setHeader('Content-Type', contentType);
      res.send(body);
    });
  }

  router.post('/init', async (req, res) => {
    const body = initBody.parse(req.body ?? {});
    // The shares exist only in this response: init commits together with its audit entry, or
    // not at all, so a broken audit sink cannot leave a server initialised with its shares lost.
    const result = await core.init(body.recovery_shares ?? body.shares, body.recovery_threshold ?? body.threshold, (trx) =>
      core.audit.appendWithin(trx, auditDraft(core, req, res, 200)),
    );
    // Committed with its entry; a failure before this point is audited as usual instead.
    res.locals.audited = true;
    res.status(200).json(result);
  });

  router.post('/unseal', async (req, res) => {
    const body = unsealBody.parse(req.body);
    if ('reset' in body) res.json(await core.resetUnseal());
    else if ('share' in body) res.json(await core.unseal(body.share));
    else if (core.status().recovery_seal) res.json(await core.autoUnseal());
    else throw new CofferError('invalid_request', 'give a share ({"share": "..."}) or {"reset": true}');
  });

  // Root key rotation (Shamir: a rekey with the threshold of shares, in two steps so that a lost
  // response loses nothing; PKCS#11: a new key object). Audited after commit like other requests:
  // an append inside the rewrap transaction would race the audit group commit under load.
  router.post('/rotate-root', ...requireToken, async (req, res) => {
    if (!isAdmin(principalOf(res))) throw new CofferError('permission_denied', 'rotating the root key needs admin rights');
    const body = rotateRootBody.parse(req.body ?? {});
    res.json(await core.rotateRoot({ shares: body.shares, newShares: body.new_shares, newThreshold: body.new_threshold }));
  });

  // Shamir rekey, step 2: the new shares prove the operators hold them; then the new root takes effect.
  router.post('/rotate-root/verify', ...requireToken, async (req, res) => {
    if (!isAdmin(principalOf(res))) throw new CofferError('permission_denied', 'rotating the root key needs admin rights');
    const body = verifyRotateRootBody.parse(req.body ?? {});
    res.json(await core.verifyRotateRoot(body.shares));
  });

  // Seal migration Shamir ⇄ PKCS#11 with the operators' shares; nothing is re-encrypted but the keys the root wraps.
  router.post('/seal-migrate', ...requireToken, async (req, res) => {
    if (!isAdmin(principalOf(res))) throw new CofferError('permission_denied', 'seal migration needs admin rights');
    const body = sealMigrateBody.parse(req.body ?? {});
    res.json(await core.migrateSeal(body.to, body.shares));
  });

  // Shares are the authority here, not a token (the root token may be the thing that was lost).
  router.post('/generate-root', async (req, res) => {
    const body = unsealBody.parse(req.body);
    if ('reset' in body) res.json(await core.generateRoot(null));
    else if ('share' in body) res.json(await core.generateRoot(body.share));
    else throw new CofferError('invalid_request', 'give a share ({"share": "..."}) or {"reset": true}');
  });

  router.post('/seal', ...requireToken, async (_req, res) => {
    if (!isAdmin(principalOf(res))) throw new CofferError('permission_denied', 'sealing needs admin rights');
    res.json(await core.seal());
  });

  return router;
}
