// The job fence's context tracking (storage/job-fence.ts): the AsyncLocalStorage behind it is
// switched on only while a fenced run is in progress (on Node 20 it costs every promise of the
// process a hook call), so runs that overlap, end, and start again must each still see exactly
// their own fence, and nothing outside a run may see one.
import { currentFence, fenceTrackingActive, outsideJobFence, runFenced } from '@coffer/server/storage/job-fence';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('job fence scope', () => {
  it('keeps a run its fence while another run starts and ends around it', async () => {
    const a = { job: 'a', epoch: 1 };
    const b = { job: 'b', epoch: 7 };
    let releaseA!: () => void;
    const pausedA = new Promise<void>((r) => (releaseA = r));
    const seenA: unknown[] = [];
    const runA = runFenced(a, async () => {
      seenA.push(currentFence());
      await pausedA; // b starts and ends meanwhile
      await tick();
      seenA.push(currentFence());
      seenA.push(await outsideJobFence(async () => {
        await tick();
        return currentFence();
      }));
    });
    const seenB: unknown[] = [];
    await runFenced(b, async () => {
      await tick();
      seenB.push(currentFence());
    });
    expect(fenceTrackingActive()).toBe(true); // a is still running
    releaseA();
    await runA;
    expect(seenA).toEqual([a, a, null]);
    expect(seenB).toEqual([b]);
    expect(fenceTrackingActive()).toBe(false);
    expect(currentFence()).toBeNull();
  });

  it('starts tracking again for the next run, and what an ended run left behind is unfenced', async () => {
    const first = { job: 'j', epoch: 1 };
    const second = { job: 'j', epoch: 2 };
    let leftBehind!: Promise<unknown>;
    await runFenced(first, async () => {
      leftBehind = new Promise((r) => setTimeout(() => r(currentFence()), 30));
    });
    expect(fenceTrackingActive()).toBe(false);
    let during: unknown;
    let leftSeen: unknown;
    await runFenced(second, async () => {
      leftSeen = await leftBehind; // the first run's timer fires while the second run tracks again
      during = currentFence();
    });
    expect(during).toEqual(second);
    expect(leftSeen).toBeNull();
    expect(await runFenced(null, async () => currentFence())).toBeNull();
    expect(fenceTrackingActive()).toBe(false);
  });

  it('gives a failed run no fence afterwards and stops tracking', async () => {
    const f = { job: 'x', epoch: 3 };
    await expect(runFenced(f, async () => {
      await tick();
      throw new Error('boom');
    })).rejects.toThrow('boom');
    expect(fenceTrackingActive()).toBe(false);
    expect(currentFence()).toBeNull();
  });
});
