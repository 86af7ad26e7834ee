/** Request schemas, declared once and used to validate every body and query at the edge. */
import { z } from 'zod';
import { SECRET_TYPES } from '../secrets/types.js';

const stringMap = (what: string, maxEntries: number, maxKey: number) =>
  z
    .record(
      z.string().min(1, `${what} keys are non-empty`).max(maxKey, `${what} keys are at most ${maxKey} characters`),
      z.string({ error: `${what} values are strings` }),
    )
    .refine((m) => Object.keys(m).length <= maxEntries, `${what} has at most ${maxEntries} entries`);

/** The largest number an `int` column holds: no version (or count) beyond it can exist, so it is bad input (400), not a database error. */
export const INT4_MAX = 2_147_483_647;
/** A secret or KEK version number. */
export const versionNumber = z.number().int().min(1).max(INT4_MAX);
/** Check-and-set: the current version, 0 = only if new. */
const casVersion = z.number().int().min(0).max(INT4_MAX);

export const initBody = z
  .object({
    shares: z.number().int().min(1).max(255).default(5),
    threshold: z.number().int().min(1).max(255).default(3),
    // PKCS#11 seal: the shares are recovery shares; these names say so (they win over shares/threshold).
    recovery_shares: z.number().int().min(1).max(255).optional(),
    recovery_threshold: z.number().int().min(1).max(255).optional(),
  })
  .strict();

const shareList = z.array(z.string().min(1).max(1024)).min(1).max(255);

export const rotateRootBody = z
  .object({
    /** Shamir seal: the threshold of current shares. */
    shares: shareList.optional(),
    new_shares: z.number().int().min(1).max(255).optional(),
    new_threshold: z.number().int().min(1).max(255).optional(),
  })
  .strict();

export const verifyRotateRootBody = z.object({ shares: shareList }).strict();

export const sealMigrateBody = z
  .object({
    to: z.enum(['pkcs11', 'shamir']),
    /** To pkcs11: the unseal shares; to shamir: the recovery shares. */
    shares: shareList,
  })
  .strict();

export const unsealBody = z.union([
  z.object({ share: z.string().min(1).max(1024) }).strict(),
  z.object({ reset: z.literal(true) }).strict(),
  // PKCS#11 seal: retry the HSM.
  z.object({}).strict(),
]);

/** Seconds between scheduled KEK rotations: from one hour to ten years. */
export const ROTATION_PERIOD_MIN = 3600;
export const ROTATION_PERIOD_MAX = 10 * 365 * 86_400;
const rotationPeriod = z
  .number()
  .int()
  .min(ROTATION_PERIOD_MIN, `rotation_period is at least ${ROTATION_PERIOD_MIN} seconds`)
  .max(ROTATION_PERIOD_MAX, `rotation_period is at most ${ROTATION_PERIOD_MAX} seconds`)
  .nullable();

export const createNamespaceBody = z
  .object({
    name: z.string().min(1).max(63),
    description: z.string().max(1024).default(''),
    rotation_period: rotationPeriod.default(null),
  })
  .strict();

export const updateNamespaceBody = z
  .object({
    description: z.string().max(1024).optional(),
    rotation_period: rotationPeriod.optional(),
    kms_export_approval: z.boolean().optional(),
  })
  .strict()
  .refine(
    (b) => b.description !== undefined || b.rotation_period !== undefined || b.kms_export_approval !== undefined,
    'give description, rotation_period and/or kms_export_approval',
  );

export const rotateKekBody = z.object({}).strict();

export const shredBody = z
  .object({ pending_window_days: z.number().int().min(7).max(30).default(30) })
  .strict();

export const writeSecretBody = z
  .object({
    data: stringMap('data', 1000, 256).refine((m) => Object.keys(m).length > 0, 'data needs at least one field'),
    type: z.enum(SECRET_TYPES).default('generic'),
    metadata: stringMap('metadata', 64, 128)
      .refine((m) => Object.values(m).every((v) => v.length <= 1024), 'metadata values are at most 1024 characters')
      .default({}),
    cas: casVersion.optional(),
    max_versions: z.number().int().min(1).max(1000).optional(),
  })
  .strict();

export const versionsBody = z
  .object({ versions: z.array(versionNumber).max(1000).optional() })
  .strict();

export const rollbackBody = z
  .object({ version: versionNumber, cas: casVersion.optional() })
  .strict();

const positiveInt = z
  .string()
  .regex(/^[1-9][0-9]{0,9}$/, 'must be a positive integer')
  .transform(Number)
  .refine((n) => n <= INT4_MAX, `must be at most ${INT4_MAX}`);

/** min_version: read-your-writes across servers (the version a write returned; see SecretService.read). */
export const readQuery = z.object({ version: positiveInt.optional(), min_version: positiveInt.optional() }).strict();

export const pageQuery = (maxPageSize: number) =>
  z
    .object({
      limit: positiveInt.refine((n) => n <= maxPageSize, `limit is at most ${maxPageSize}`).optional(),
      cursor: z.string().max(2048).optional(),
      recursive: z.enum(['true', 'false']).optional(),
    })
    .strict();

export const deleteNamespaceQuery = z.object({ force: z.enum(['true', 'false']).optional() }).strict();
export const emptyQuery = z.object({}).strict();

/** A status code a load balancer wants instead of the default (1xx would leave clients waiting for a final response). */
const statusCodeParam = z
  .string()
  .regex(/^[0-9]{3}$/, 'must be an HTTP status code (200-599)')
  .transform(Number)
  .refine((n) => n >= 200 && n <= 599, 'must be an HTTP status code (200-599)');
/** Vault-style flag: `?standbyok`, `?standbyok=true` or `=1` mean yes. */
const flagParam = z.enum(['', 'true', 'false', '1', '0']).transform((v) => v === '' || v === 'true' || v === '1');

/** GET /v1/sys/health overrides, as Vault names them. */
export const healthQuery = z
  .object({
    activecode: statusCodeParam.optional(),
    standbycode: statusCodeParam.optional(),
    sealedcode: statusCodeParam.optional(),
    uninitcode: statusCodeParam.optional(),
    standbyok: flagParam.optional(),
    perfstandbyok: flagParam.optional(),
  })
  .strict();
