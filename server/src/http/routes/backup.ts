/**
 * /v1/sys/backup, /v1/sys/backup/verify, /v1/sys/restore (vault/backup.ts,
 * vault/restore.ts). A backup holds every wrapped key: it is as sensitive as
 * the database itself, so only a server-wide admin takes one, and its audit
 * entry is durable before the first byte leaves (a streamed response cannot
 * be held back at its end like others: see http/audit.ts).
 *
 * Uploads (verify, restore) are the backup file as sent, `application/x-ndjson`,
 * read here instead of by the JSON body parser (whose limit is sized for API
 * calls): both streamed to a spool file up to COFFER_MAX_RESTORE_BYTES. A restore's upload may start with the
 * original unseal shares (sdk/src/api/backup.ts RestoreEnvelope): in the body,
 * never the URL, and the audit entry records no body.
 */
import type { Request } from 'express';
import { BACKUP_MEDIA_TYPE } from '@coffer/sdk/api';
import { CofferError } from '../../errors.js';
import { op, type RoutePath } from '../route.js';
import { emptyQuery } from '../schemas.js';

const UPLOADS = new Set(['/v1/sys/backup/verify', '/v1/sys/restore']);

/** An upload of a backup file: left alone by the JSON body parser and its size limit. */
export const isBackupUpload = (req: Request): boolean =>
  // req.path is relative to a router's mount: the full path is baseUrl + path.
  UPLOADS.has(req.baseUrl + req.path) && req.is(BACKUP_MEDIA_TYPE) === BACKUP_MEDIA_TYPE;

/**
 * The upload's body for a spool (vault/restore-spool.ts), or 415. Not destroyed when the reader
 * stops early (a refusal): the 4xx must still reach the client.
 */
function backupUpload(req: Request): AsyncIterable<Buffer> {
  if (!isBackupUpload(req)) throw new CofferError('unsupported_media_type', `send the backup file as ${BACKUP_MEDIA_TYPE}`);
  return { [Symbol.asyncIterator]: () => req.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer> };
}

/** Resolves when `res` drains or closes; the other listener is removed (one per slow write would pile up). */
export function writable(res: Pick<NodeJS.EventEmitter, 'once' | 'off'>): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

const ADMIN = { kind: 'admin', denied: 'backups need admin rights' } as const;

export const backupPaths: RoutePath[] = [
  {
    template: '/v1/sys/backup',
    ops: {
      GET: op({
        action: 'sys.backup',
        access: ADMIN,
        query: emptyQuery,
        handler: async (_req, res, { core, query, auditDraft }) => {
          query();
          // Fails (503) before anything is sent when the entry cannot be made durable.
          await core.audit.append(auditDraft(200));
          res.locals.audited = true;
          let started = false;
          const write = async (chunk: string) => {
            if (!started) {
              started = true;
              res.status(200);
              res.setHeader('Content-Type', `${BACKUP_MEDIA_TYPE}; charset=utf-8`);
              res.setHeader('Content-Disposition', 'attachment; filename="coffer-backup.ndjson"');
              res.setHeader('Cache-Control', 'no-store');
            }
            if (!res.write(chunk)) await writable(res);
            if (res.destroyed) throw new Error('the client went away during the backup');
          };
          try {
            await core.backup(write);
          } catch (err) {
            // Once bytes are out the status is sent: cut the stream, and the client sees no trailer.
            if (started) {
              res.destroy(err instanceof Error ? err : undefined);
              return;
            }
            throw err;
          }
          res.end();
        },
      }),
    },
  },
  {
    template: '/v1/sys/backup/verify',
    ops: {
      POST: op({
        action: 'sys.backup.verify',
        access: ADMIN,
        query: emptyQuery,
        handler: async (req, res, { core, query }) => {
          query();
          // Spooled to disk and checked as it arrives, like a restore's, up to COFFER_MAX_RESTORE_BYTES.
          res.json(await core.verifyBackup(backupUpload(req)));
        },
      }),
    },
  },
  {
    // Like init: an uninitialised server has no token to ask for.
    template: '/v1/sys/restore',
    ops: {
      POST: op({
        action: 'sys.restore',
        access: { kind: 'public' },
        query: emptyQuery,
        handler: async (req, res, { core, query, auditDraft }) => {
          query();
          // Streamed to a spool file as it arrives (vault/restore-spool.ts), up to COFFER_MAX_RESTORE_BYTES.
          const result = await core.restore(backupUpload(req), (trx) => core.audit.appendWithin(trx, auditDraft(200)));
          res.locals.audited = true;
          res.status(200).json(result);
        },
      }),
    },
  },
];
