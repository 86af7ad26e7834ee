/** /v1/namespaces: create, list, get, update, delete; KEK lifecycle and shredding. Administration needs admin rights. */
import { CofferError } from '../../errors.js';
import { isAdmin, isAllowed, type Capability } from '../../policy/policy.js';
import { decodeCursor } from '../../secrets/pagination.js';
import { principalOf } from '../auth.js';
import { namespaceParam, op, type Access, type Mount } from '../route.js';
import { namespaceTransferPaths } from './namespace-transfer.js';
import { createNamespaceBody, deleteNamespaceQuery, emptyQuery, pageQuery, rotateKekBody, shredBody, updateNamespaceBody } from '../schemas.js';

const denied = () => new CofferError('permission_denied', 'permission denied');
/** A capability on the namespace itself (path ''). */
const on = (capability: Capability): Access => ({ kind: 'scoped', capability, denied });
// A namespace admin (`admin` on a namespace glob) may create, read and delete the namespaces it matches;
// namespace-scoped administration (KEK lifecycle, shredding) needs the admin capability on the namespace too.
const ADMIN = on('admin');


export const namespacesMount: Mount = {
  prefix: '/v1/namespaces',
  guard: 'token',
  names: { as: 'namespace', max: 64 },
  unknown: { action: 'namespace.unknown', namespaceFromFirstSegment: true },
  paths: [
    {
      template: '/v1/namespaces',
      otherwise: (method) => (method === 'DELETE' ? 'namespace.delete' : method === 'PATCH' ? 'namespace.update' : 'namespace.list'),
      ops: {
        POST: op({
          action: 'namespace.create',
          access: ADMIN,
          body: createNamespaceBody,
          targetOf: ({ body }) => ({ namespace: body.name }),
          handler: async (_req, res, { core, body: parse }) => {
            const body = parse();
            res.status(201).json(await core.services().namespaces.create(body.name, body.description, body.rotation_period));
          },
        }),
        // Everyone may list; a non-admin sees only the namespaces it can list (pages stay full, and a
        // cursor never names a namespace the caller was not shown).
        GET: op({
          action: 'namespace.list',
          access: { kind: 'token' },
          query: ({ maxPageSize }) => pageQuery(maxPageSize).omit({ recursive: true }),
          handler: async (_req, res, { core, maxPageSize, query }) => {
            const principal = principalOf(res);
            const q = query();
            const admin = isAdmin(principal);
            res.json(
              await core
                .services()
                .namespaces.list({ limit: q.limit ?? maxPageSize, after: decodeCursor(q.cursor) }, (name) => admin || isAllowed(principal, 'list', name, '')),
            );
          },
        }),
      },
    },
    {
      template: '/v1/namespaces/:name',
      otherwise: (method) => (method === 'POST' ? 'namespace.create' : 'namespace.read'),
      ops: {
        GET: op({
          action: 'namespace.read',
          access: on('list'),
          query: emptyQuery,
          target: namespaceParam,
          handler: async (_req, res, { core, target: { namespace: name } }) => {
            res.json(await core.services().namespaces.get(name));
          },
        }),
        PATCH: op({
          action: 'namespace.update',
          access: ADMIN,
          query: emptyQuery,
          body: updateNamespaceBody,
          bodyMayBeAbsent: true,
          target: namespaceParam,
          handler: async (_req, res, { core, body: parse, target: { namespace: name } }) => {
            const body = parse();
            res.json(await core.services().namespaces.update(name, {
                description: body.description,
                rotationPeriodSeconds: body.rotation_period,
                kmsExportApproval: body.kms_export_approval,
              }));
          },
        }),
        DELETE: op({
          action: 'namespace.delete',
          access: ADMIN,
          query: deleteNamespaceQuery,
          target: namespaceParam,
          handler: async (_req, res, { core, query, target: { namespace: name } }) => {
            const q = query();
            res.json(await core.services().namespaces.delete(name, q.force === 'true'));
          },
        }),
      },
    },
    {
      template: '/v1/namespaces/:name/kek',
      otherwise: 'namespace.kek.unknown',
      ops: {
        GET: op({
          action: 'namespace.kek.read',
          access: ADMIN,
          query: emptyQuery,
          target: namespaceParam,
          handler: async (_req, res, { core, target: { namespace: name } }) => {
            res.json(await core.services().kek.status(name));
          },
        }),
      },
    },
    {
      template: '/v1/namespaces/:name/kek/rotate',
      ops: {
        POST: op({
          action: 'namespace.kek.rotate',
          access: ADMIN,
          query: emptyQuery,
          body: rotateKekBody,
          bodyMayBeAbsent: true,
          target: namespaceParam,
          handler: async (_req, res, { core, target: { namespace: name } }) => {
            res.json(await core.services().namespaces.rotateKek(name));
          },
        }),
      },
    },
    {
      template: '/v1/namespaces/:name/shred',
      otherwise: 'namespace.shred.schedule',
      ops: {
        POST: op({
          action: 'namespace.shred.schedule',
          access: ADMIN,
          query: emptyQuery,
          body: shredBody,
          bodyMayBeAbsent: true,
          target: namespaceParam,
          handler: async (_req, res, { core, body: parse, target: { namespace: name } }) => {
            const body = parse();
            res.status(202).json(await core.services().kek.scheduleShred(name, body.pending_window_days));
          },
        }),
        DELETE: op({
          action: 'namespace.shred.cancel',
          access: ADMIN,
          query: emptyQuery,
          target: namespaceParam,
          handler: async (_req, res, { core, target: { namespace: name } }) => {
            res.json(await core.services().kek.cancelShred(name));
          },
        }),
      },
    },
    ...namespaceTransferPaths,
  ],
};
