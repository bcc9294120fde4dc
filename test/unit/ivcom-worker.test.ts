// Real concurrency: the producer runs in a worker thread (its own event loop and isolate), the
// consumer in the main thread, over one SharedArrayBuffer. Doorbells are postMessage (an event
// loop wake-up, like the eventfd in production).

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { IvcomChannel } from '../../transport/ivcom/channel.js';
import { segmentBytes } from '../../transport/ivcom/layout.js';
import type { IncomingMessage } from '../../transport/transport.js';
import { pattern, sameBytes, transpileIvcom } from './ivcom-helpers.js';

const WORKER = `
import { parentPort, workerData } from 'node:worker_threads';
import { IvcomChannel } from './transport/ivcom/channel.js';
${pattern.toString()}
const { sab, ringBytes, sizes } = workerData;
let rings = 0;
const ch = new IvcomChannel({
  sab, ringBytes, low: true, rank: 0, peer: 1, chunkBytes: 8192,
  bell: { ring() { rings++; parentPort.postMessage('bell'); } },
  deliver() {},
  fail(e) { parentPort.postMessage({ fail: String(e) }); },
});
parentPort.on('message', () => ch.idle());
let pending = 0;
for (let i = 0; i < sizes.length; i++) {
  const p = ch.send({ ctx: 1, source: 0, tag: i, codec: 0, parts: [pattern(sizes[i], i)], byteLength: sizes[i] });
  if (p) { pending++; await p; }
}
await ch.close();
parentPort.postMessage({ done: true, rings, pending });
`;

let dir: string | undefined;
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ivcom channel across worker_threads', () => {
  it('producer in a worker, consumer in the main thread: all messages, in order, intact', async () => {
    dir = transpileIvcom({ 'producer.mjs': WORKER });
    const ringBytes = 64 * 1024;
    const sab = new SharedArrayBuffer(segmentBytes(ringBytes));
    const sizes: number[] = [];
    let x = 12345;
    for (let i = 0; i < 3000; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      sizes.push(x % 50 === 0 ? x % 300_000 : x % 700);
    }
    const got: IncomingMessage[] = [];
    const fails: Error[] = [];
    let consumerRings = 0;
    const worker = new Worker(join(dir, 'producer.mjs'), { workerData: { sab, ringBytes, sizes } });
    const ch = new IvcomChannel({
      sab,
      ringBytes,
      low: false,
      rank: 1,
      peer: 0,
      bell: {
        ring() {
          consumerRings++;
          worker.postMessage('bell');
        },
      },
      deliver: (m) => got.push(m),
      fail: (e) => fails.push(e),
    });
    const result = new Promise<{ rings: number; pending: number }>((resolve, reject) => {
      worker.on('message', (m) => {
        if (m === 'bell') ch.idle();
        else if (m.fail) reject(new Error(m.fail));
        else if (m.done) resolve(m);
      });
      worker.on('error', reject);
    });
    // Alternate between spinning (poll) and sleeping on the doorbell (idle + event loop).
    let turns = 0;
    while (got.length < sizes.length && turns < 200_000) {
      turns++;
      if (turns % 3 === 0) {
        ch.idle();
        await new Promise<void>((r) => setTimeout(r, 1));
      } else {
        for (let k = 0; k < 2000; k++) ch.poll();
        await new Promise<void>((r) => setImmediate(r));
      }
    }
    const w = await result;
    await worker.terminate();
    expect(fails).toEqual([]);
    expect(got.length).toBe(sizes.length);
    for (let i = 0; i < sizes.length; i++) {
      expect(got[i]!.tag).toBe(i);
      if (!sameBytes(got[i]!.payload, pattern(sizes[i]!, i))) throw new Error(`message ${i} differs`);
    }
    // Backpressure happened (large messages through a 64 KiB ring) and was resolved by bells.
    expect(w.pending).toBeGreaterThan(0);
    console.log(`worker test: ${turns} turns, producer rang ${w.rings}×, consumer rang ${consumerRings}×, ${w.pending} sends waited`);
  });
});
