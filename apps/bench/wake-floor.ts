// The floor under the idle suite's wake-up figure: the doorbell alone, with no runtime. Two Node
// processes share an eventfd and a memfd page (kmod, as ivcom does); the waker sleeps WAIT ms,
// writes its clock into the page and rings; the sleeper, idle in its event loop on uv_poll,
// reads the clock in the callback. What this takes is what any Node process woken through the
// kernel pays on this machine, before a single line of ivcom runs.
//   node wake-floor.js [--wait=MS] [--reps=N] [--json]

import { spawn } from 'node:child_process';
import * as kmod from '../../kmod/index.js';
import { helpIfAsked } from './common.js';

helpIfAsked(import.meta.url);

const args = process.argv.slice(2);
const WAIT_MS = Number(args.find((a) => a.startsWith('--wait='))?.slice(7) ?? 100);
const REPS = Number(args.find((a) => a.startsWith('--reps='))?.slice(7) ?? 20);
const PAGE = 4096;

if (args.includes('--sleeper')) {
  // fd 3: the eventfd, fd 4: the page (inherited from the waker).
  const clock = new BigInt64Array(kmod.segmentMap(4, PAGE));
  const us: number[] = [];
  const w = new kmod.FdWatcher(3, () => {
    const now = process.hrtime.bigint();
    kmod.doorbellDrain(3);
    us.push(Number(now - clock[0]!) / 1000);
    if (us.length === REPS) {
      w.close();
      process.stdout.write(JSON.stringify(us) + '\n');
    }
  });
  w.start();
} else {
  const bell = kmod.eventfdCreate();
  const page = kmod.segmentCreate('ivcom-wake-floor', PAGE);
  const clock = new BigInt64Array(kmod.segmentMap(page, PAGE));
  const child = spawn(process.execPath, [process.argv[1]!, '--sleeper', `--reps=${REPS}`], {
    stdio: ['ignore', 'pipe', 'inherit', bell, page],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await sleep(300); // the sleeper is up and watching
  for (let i = 0; i < REPS; i++) {
    await sleep(WAIT_MS);
    clock[0] = process.hrtime.bigint();
    kmod.doorbellRing(bell);
  }
  await new Promise((r) => child.on('exit', r));
  kmod.closeFd(bell);
  kmod.closeFd(page);
  const us = (JSON.parse(out) as number[]).sort((a, b) => a - b);
  const med = us[us.length >> 1]!;
  if (args.includes('--json')) console.log(JSON.stringify({ waitMs: WAIT_MS, wakeUs: us }));
  else console.log(`bare doorbell, Node to Node, after ${WAIT_MS} ms idle: median ${med.toFixed(1)} us (min ${us[0]!.toFixed(1)}, max ${us.at(-1)!.toFixed(1)})`);
}
