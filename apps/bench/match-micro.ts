// Micro-benchmark of the matcher alone (runtime/match.ts, one thread, no transport): per message,
// a receive posted for (source, tag) and then the message that completes it — the matching work
// every point-to-point message and collective step pays.
//
//   node dist/apps/bench/match-micro.js [--quick]
//
// Printed for 2, 8 and 64 sources that have a message queued under another tag (a job with that
// many peers): ns per post + arrive, the best of several rounds (CPU cost, free of cross-core
// effects; compare builds in one sitting).

import { Matcher, type Envelope, type Request } from '../../runtime/match.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const quick = process.argv.includes('--quick');
const MESSAGES = quick ? 200_000 : 2_000_000;
const ROUNDS = quick ? 3 : 15;
const TAG = 1;
/** The tag the other sources' queued messages carry: never the one received. */
const OTHER_TAG = 9;

function round(sources: number): number {
  const m = new Matcher();
  const req: Request = { seq: 0, done: false, source: 0, tag: TAG, complete() {}, fail() {} };
  const env: Envelope = { seq: 0, source: 0, tag: TAG, codec: 0, payload: new Uint8Array(8) };
  for (let s = 1; s < sources; s++) m.arrive({ seq: -s, source: s, tag: OTHER_TAG, codec: 0, payload: new Uint8Array(8) });
  const t = performance.now();
  for (let i = 0; i < MESSAGES; i++) {
    req.done = false;
    req.seq = i;
    m.post(req);
    env.seq = i;
    m.arrive(env);
  }
  return ((performance.now() - t) * 1e6) / MESSAGES;
}

for (const sources of [2, 8, 64]) {
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) best = Math.min(best, round(sources));
  console.log(`${String(sources).padStart(3)} sources: ${best.toFixed(1)} ns per post + arrive`);
}
