// Run-queue pressure: whether this host has more runnable threads than cores right now. Spinning
// pays only while the peer runs on another core at the same time; when threads outnumber cores
// (another job, a busy machine), a spinning rank holds a core its peer may be waiting for, and a
// reply then waits for the scheduler's next turn (~1 ms) instead of a wake-up (~50 µs, which the
// scheduler grants a woken thread promptly). So under pressure a rank waits as a TCP rank does:
// armed doorbell, asleep. The kernel's count of runnable threads is the 4th field of
// /proc/loadavg ("running/total"), which includes this rank while it spins.

import { closeSync, openSync, readSync } from 'node:fs';
import os from 'node:os';

/** How often (ms) the count is re-read while a rank spins: a pread of /proc/loadavg costs ~4 µs here. */
const SAMPLE_MS = 10;
/**
 * The verdict is the majority of the last WINDOW samples (one sample is one instant). A scavenge's
 * helper threads, an optimizing compile or a short-lived process lengthen the run queue for a few
 * ms; V8's background threads of the job's own ranks can keep it long for 50-150 ms after a phase
 * change; a competing job does for seconds. Requiring samples in a row instead would let one
 * sample undo a change in either direction: a verdict of pressure taken while the ranks' own
 * helpers ran outlives them by 100-300 ms, in which a quiet stream sleeps on its doorbell
 * hundreds of times (docs/decisions.md). A competing job is met within MAJORITY samples (50 ms).
 */
export const WINDOW = 9;
export const MAJORITY = 5;
const WINDOW_MASK = (1 << WINDOW) - 1;
const SLASH = 0x2f;
const SPACE = 0x20;

export class RunQueue {
  private fd = -1;
  private readonly buf = Buffer.alloc(128);
  private nextAt = 0;
  /** The last WINDOW samples, newest in bit 0: 1 where runnable threads outnumbered the cores. */
  private history = 0;
  /** More runnable threads than cores, as of the last samples. */
  private crowded = false;

  constructor(
    private readonly cores = os.availableParallelism(),
    path = '/proc/loadavg',
  ) {
    try {
      this.fd = openSync(path, 'r');
    } catch {
      /* not Linux: never under pressure, spin as before */
    }
  }

  /**
   * True while the host's runnable threads outnumber its cores (re-sampled every SAMPLE_MS).
   * `now`: performance.now(), in ms.
   */
  pressure(now: number): boolean {
    if (this.fd < 0 || now < this.nextAt) return this.crowded;
    this.nextAt = now + SAMPLE_MS;
    const over = this.running() > this.cores;
    const h = ((this.history << 1) | (over ? 1 : 0)) & WINDOW_MASK;
    this.history = h;
    let n = 0;
    for (let b = h; b !== 0; b &= b - 1) n++;
    this.crowded = n >= MAJORITY;
    return this.crowded;
  }

  /** The verdict as of the last sample, without sampling: a spin's start reads no clock (progress.ts). */
  get latest(): boolean {
    return this.crowded;
  }

  /** Runnable threads now (0 when the file cannot be read: no pressure). */
  private running(): number {
    let n: number;
    try {
      n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
    } catch {
      this.close();
      return 0;
    }
    const b = this.buf;
    // "0.96 1.95 2.08 3/85 15755": the digits between the last space before '/' and the '/'.
    const slash = b.indexOf(SLASH);
    if (slash <= 0 || slash >= n) return 0;
    let start = slash;
    while (start > 0 && b[start - 1] !== SPACE) start--;
    let v = 0;
    for (let i = start; i < slash; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) return 0;
      v = v * 10 + d;
    }
    return v;
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.fd = -1;
  }
}
