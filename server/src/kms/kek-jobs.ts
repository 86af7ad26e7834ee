/**
 * The KEK lifecycle's background work as scheduler jobs (jobs/scheduler.ts),
 * each with its own cluster-wide lock, back-off and metrics:
 * - kek-rotation: namespaces due a rotation (schedule or usage limit); a
 *   rotation makes rewrap work, so it kicks kek-rewrap;
 * - namespace-shred: namespaces whose deletion date has come;
 * - kek-rewrap: every running rewrap job, batch by batch; a stop (seal,
 *   shutdown) lets the batch in flight commit and starts no other.
 */
import type { JobSpec } from '../jobs/scheduler.js';
import type { KekLifecycle } from './kek-lifecycle.js';

export const KEK_JOBS = {
  rotation: 'kek-rotation',
  shredding: 'namespace-shred',
  rewrap: 'kek-rewrap',
} as const;

export type KekJobName = (typeof KEK_JOBS)[keyof typeof KEK_JOBS];

export function kekJobs(kek: KekLifecycle, intervalMs: number, kick: (job: KekJobName) => void): JobSpec[] {
  return [
    {
      name: KEK_JOBS.rotation,
      intervalMs,
      run: async ({ signal }) => {
        if ((await kek.rotateDue(new Date(), signal)) > 0) kick(KEK_JOBS.rewrap);
      },
    },
    {
      name: KEK_JOBS.shredding,
      intervalMs,
      run: async () => {
        await kek.sweepShredding(new Date());
      },
    },
    { name: KEK_JOBS.rewrap, intervalMs, run: ({ signal }) => kek.runRewrapJobs(signal) },
  ];
}
