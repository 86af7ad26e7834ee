// The figures over two scenarios (issue 13's (b1)/(a), (h1)/(b1), (c1)/(b1) ...) measured in
// windows lead, inner, inner, lead on servers that are all up, like the audit pair (b1 b0 b0 b1):
// a scenario measured minutes after its partner meets a machine in another state (one round's
// server CPU per request rises from its start to its end), which lands on one side of the ratio.
import { ratioPair } from './figures.mjs';

/** Options for a window on a server that has just been measured: its warm-up is the short one only. */
export const again = (opts) => ({ ...opts, warmupRequests: 0 });

/**
 * After `lead.window` (the lead scenario's last window), measures `inner` twice and `lead` once
 * more, and stores the figure (y)/(x) of the four windows as `pair:y/x` in `results`
 * (figures.mjs ratioPair). The first inner window becomes the inner scenario's result unless the
 * round has one already; the windows that are no scenario's result have their errors added to
 * (y)'s problems, so they fail the run like any scenario's. `measure(opts)` runs one window.
 * Returns the lead's new window, which can lead the next pair.
 */
export async function pairWindows(results, { lead, inner, y, opts }) {
  const first = await inner.measure(opts);
  if (!results.has(inner.id)) results.set(inner.id, first);
  const second = await inner.measure(again(opts));
  const last = await lead.measure(again(opts));
  const windows = { [lead.id]: [lead.window, last], [inner.id]: [first, second] };
  const x = y === lead.id ? inner.id : lead.id;
  const own = new Set([results.get(x), results.get(y)]);
  // The lead's first window was counted where it was measured (as a result or by the pair before).
  const extra = [first, second, last].filter((w) => !own.has(w));
  const pair = { ...ratioPair(x, y, windows[x], windows[y], extra), order: `${lead.id} ${inner.id} ${inner.id} ${lead.id}` };
  results.set(`pair:${y}/${x}`, pair);
  if (pair.problems.length > 0) (results.get(y).problems ??= []).push(...pair.problems);
  return last;
}
