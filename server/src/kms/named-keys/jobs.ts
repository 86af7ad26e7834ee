/**
 * Named keys' background work as a scheduler job (jobs/scheduler.ts): keys
 * past their auto_rotate_period get a new version. Safe on several servers
 * (the job's cluster-wide lock, and rotateDue re-checks under the key's lock).
 */
import type { JobSpec } from '../../jobs/scheduler.js';
import type { NamedKeys } from './keys.js';

export const KMS_ROTATION_JOB = 'kms-key-rotation';

export function kmsRotationJob(keys: Pick<NamedKeys, 'rotateDue'>, intervalMs: number): JobSpec {
  return {
    name: KMS_ROTATION_JOB,
    intervalMs,
    run: async ({ signal }) => {
      await keys.rotateDue(new Date(), signal);
    },
  };
}
