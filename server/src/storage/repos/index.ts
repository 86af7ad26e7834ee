/**
 * Data access, one module per table group (the only place SQL is written, once
 * the remaining queries have moved here). Each repo is built once, over the
 * database, in app/compose.ts; each function takes an optional executor so a
 * caller can run it inside its own transaction, and says why when it locks.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../schema.js';
import { approleRepo } from './approle.js';
import { auditIntentsRepo } from './audit-intents.js';
import { auditRepo } from './audit.js';
import { certRepo } from './cert.js';
import { jwtRepo } from './jwt.js';
import { kekLifecycleRepo } from './kek-lifecycle.js';
import { escrowRequestsRepo } from './escrow-requests.js';
import { importKeysRepo } from './import-keys.js';
import { namespaceKeysRepo } from './namespace-keys.js';
import { namespaceTransferRepo } from './namespace-transfer.js';
import { namespacesRepo } from './namespaces.js';
import { rewrapJobsRepo } from './rewrap-jobs.js';
import { rootWrappedRepo } from './root-wrapped.js';
import { kmsKeysRepo } from './kms-keys.js';
import { loginFailuresRepo } from './login-failures.js';
import { policiesRepo } from './policies.js';
import { sealConfigRepo } from './seal-config.js';
import { secretsRepo } from './secrets.js';
import { systemKeysRepo } from './system-keys.js';
import { tokensRepo } from './tokens.js';
import { userpassRepo } from './userpass.js';

export function createRepos(db: Kysely<Database>) {
  return {
    kekLifecycle: kekLifecycleRepo(db),
    sealConfig: sealConfigRepo(db),
    systemKeys: systemKeysRepo(db),
    tokens: tokensRepo(db),
    namespaces: namespacesRepo(db),
    namespaceKeys: namespaceKeysRepo(db),
    namespaceTransfer: namespaceTransferRepo(db),
    secrets: secretsRepo(db),
    rewrapJobs: rewrapJobsRepo(db),
    importKeys: importKeysRepo(db),
    escrowRequests: escrowRequestsRepo(db),
    rootWrapped: rootWrappedRepo(db),
    kmsKeys: kmsKeysRepo(db),
    audit: auditRepo(db),
    auditIntents: auditIntentsRepo(db),
    policies: policiesRepo(db),
    userpass: userpassRepo(db),
    approle: approleRepo(db),
    jwt: jwtRepo(db),
    cert: certRepo(db),
    loginFailures: loginFailuresRepo(db),
  };
}

export type Repos = ReturnType<typeof createRepos>;
