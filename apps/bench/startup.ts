// The smallest job: join, pass a barrier, leave. Rank 0 prints when every rank had joined (ms
// since the epoch), so that the caller can tell start-up from the whole run.

import { finalize, init } from '../../runtime/index.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const comm = await init();
await comm.barrier();
if (comm.rank === 0) console.log(JSON.stringify({ readyAt: performance.timeOrigin + performance.now(), size: comm.size }));
await finalize();
