/** /v1/sys: initialise, unseal, seal, status, health, readiness, metrics. `seal` and `metrics` need a token. */
import type { HealthStatus } from '@coffer/sdk/api';
import { CofferError } from '../../errors.js';
import { op, type Mount } from '../route.js';
import { backupPaths } from './backup.js';
import { emptyQuery, healthQuery, initBody, rotateRootBody, sealMigrateBody, verifyRotateRootBody, unsealBody } from '../schemas.js';

/** How long readiness waits for the database to answer `select 1`. */
const READY_DB_TIMEOUT_MS = 1000;

const PUBLIC = { kind: 'public' } as const;
const admin = (denied: string) => ({ kind: 'admin', denied }) as const;

export const sysMount: Mount = {
  prefix: '/v1/sys',
  guard: null,
  unknown: { action: 'sys.unknown' },
  paths: [
    {
      template: '/v1/sys/seal-status',
      ops: {
        GET: op({
          action: 'sys.seal-status',
          access: PUBLIC,
          query: emptyQuery,
          handler: async (_req, res, ctx) => {
            ctx.query();
            await ctx.core.lookForInit();
            res.json(ctx.core.status());
          },
        }),
      },
    },
    {
      // Load-balancer friendly: 200 active, 503 sealed, 501 not initialised (Vault's codes), each
      // overridable (?sealedcode=200 turns it into a liveness probe). Every server is active (never a
      // standby); `node` and `jobs` say which server answered and which background jobs it runs.
      template: '/v1/sys/health',
      ops: {
        GET: op({
          action: 'sys.health',
          access: PUBLIC,
          query: healthQuery,
          handler: async (_req, res, { core, query }) => {
            const q = query();
            await core.lookForInit();
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
              node: core.node,
              jobs: core.jobs(),
            } satisfies HealthStatus);
          },
        }),
      },
    },
    {
      // Readiness: may this server take traffic now? Initialised, unsealed, and the database answers.
      template: '/v1/sys/ready',
      ops: {
        GET: op({
          action: 'sys.ready',
          access: PUBLIC,
          query: emptyQuery,
          handler: async (_req, res, { core, query }) => {
            query();
            const database = await core.pingDatabase(READY_DB_TIMEOUT_MS);
            await core.lookForInit();
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
              node: core.node,
              jobs: core.jobs(),
            });
          },
        }),
      },
    },
    {
      template: '/v1/sys/metrics',
      ops: {
        GET: op({
          action: 'sys.metrics',
          access: admin('metrics need admin rights'),
          query: emptyQuery,
          // Served when the server keeps metrics (always, when started by startServer).
          enabled: ({ metrics }) => metrics !== undefined,
          handler: async (_req, res, { metrics, query }) => {
            query();
            const { contentType, body } = await metrics!.render();
            res.setHeader('Content-Type', contentType);
            res.send(body);
          },
        }),
      },
    },
    {
      template: '/v1/sys/init',
      ops: {
        POST: op({
          action: 'sys.init',
          access: PUBLIC,
          body: initBody,
          bodyMayBeAbsent: true,
          handler: async (_req, res, { core, body: parse, auditDraft }) => {
            const body = parse();
            // The shares exist only in this response: init commits together with its audit entry, or
            // not at all, so a broken audit sink cannot leave a server initialised with its shares lost.
            const result = await core.init(body.recovery_shares ?? body.shares, body.recovery_threshold ?? body.threshold, (trx) =>
              core.audit.appendWithin(trx, auditDraft(200)),
            );
            // Committed with its entry; a failure before this point is audited as usual instead.
            res.locals.audited = true;
            res.status(200).json(result);
          },
        }),
      },
    },
    {
      template: '/v1/sys/unseal',
      ops: {
        POST: op({
          action: 'sys.unseal',
          access: PUBLIC,
          body: unsealBody,
          handler: async (_req, res, { core, body: parse }) => {
            const body = parse();
            if ('reset' in body) res.json(await core.resetUnseal());
            else if ('share' in body) res.json(await core.unseal(body.share));
            else if (core.status().recovery_seal) res.json(await core.autoUnseal());
            else throw new CofferError('invalid_request', 'give a share ({"share": "..."}) or {"reset": true}');
          },
        }),
      },
    },
    {
      // Root key rotation (Shamir: a rekey with the threshold of shares, in two steps so that a lost
      // response loses nothing; PKCS#11: a new key object). Audited after commit like other requests:
      // an append inside the rewrap transaction would race the audit group commit under load.
      template: '/v1/sys/rotate-root',
      ops: {
        POST: op({
          action: 'sys.rotate-root',
          access: admin('rotating the root key needs admin rights'),
          body: rotateRootBody,
          bodyMayBeAbsent: true,
          handler: async (_req, res, { core, body: parse }) => {
            const body = parse();
            res.json(await core.rotateRoot({ shares: body.shares, newShares: body.new_shares, newThreshold: body.new_threshold }));
          },
        }),
      },
    },
    {
      // Shamir rekey, step 2: the new shares prove the operators hold them; then the new root takes effect.
      template: '/v1/sys/rotate-root/verify',
      ops: {
        POST: op({
          action: 'sys.rotate-root.verify',
          access: admin('rotating the root key needs admin rights'),
          body: verifyRotateRootBody,
          bodyMayBeAbsent: true,
          handler: async (_req, res, { core, body }) => {
            res.json(await core.verifyRotateRoot(body().shares));
          },
        }),
      },
    },
    {
      // Seal migration Shamir ⇄ PKCS#11 with the operators' shares; nothing is re-encrypted but the keys the root wraps.
      template: '/v1/sys/seal-migrate',
      ops: {
        POST: op({
          action: 'sys.seal-migrate',
          access: admin('seal migration needs admin rights'),
          body: sealMigrateBody,
          bodyMayBeAbsent: true,
          handler: async (_req, res, { core, body: parse }) => {
            const body = parse();
            res.json(await core.migrateSeal(body.to, body.shares));
          },
        }),
      },
    },
    {
      // Shares are the authority here, not a token (the root token may be the thing that was lost).
      template: '/v1/sys/generate-root',
      ops: {
        POST: op({
          action: 'sys.generate-root',
          access: PUBLIC,
          body: unsealBody,
          handler: async (_req, res, { core, body: parse }) => {
            const body = parse();
            if ('reset' in body) res.json(await core.generateRoot(null));
            else if ('share' in body) res.json(await core.generateRoot(body.share));
            else throw new CofferError('invalid_request', 'give a share ({"share": "..."}) or {"reset": true}');
          },
        }),
      },
    },
    {
      template: '/v1/sys/seal',
      ops: {
        POST: op({
          action: 'sys.seal',
          access: admin('sealing needs admin rights'),
          handler: async (_req, res, { core }) => {
            res.json(await core.seal());
          },
        }),
      },
    },
    ...backupPaths,
  ],
};
