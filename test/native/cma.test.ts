import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { memAddress, vmRead } from '../../kmod/index.js';
import { CrossMemory } from '../../transport/cma.js';
import { expectNativeError, fixture } from './helpers.js';

const pattern = (i: number) => (i * 13 + 5) & 0xff;

async function holder(): Promise<{ pid: number; address: bigint; kill: () => void }> {
  const child = spawn(process.execPath, [fixture('child-cma.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const { pid, address } = JSON.parse(line.toString()) as { pid: number; address: string };
  return { pid, address: BigInt(address), kill: () => child.kill('SIGKILL') };
}

describe('native single copy (process_vm_readv)', () => {
  it('copies another process\'s bytes straight into a typed array, at an offset', async () => {
    const h = await holder();
    try {
      const dst = new Uint8Array(1 << 20);
      vmRead(h.pid, h.address, dst, 0, dst.length);
      expect(dst.every((v, i) => v === pattern(i))).toBe(true);
      const part = new Uint8Array(300);
      vmRead(h.pid, h.address + 1000n, part, 100, 200);
      expect(part[99]).toBe(0);
      expect(part[100]).toBe(pattern(1000));
      expect(part[299]).toBe(pattern(1199));
      // Through the transport's wrapper: a refusal (a bad address) turns the peer off for good.
      const cm = new CrossMemory({ memAddress, vmRead }, () => h.pid);
      const view = new Uint8Array(4096);
      expect(cm.read(7, h.address, view)).toBe(true);
      expect(view[4095]).toBe(pattern(4095));
      expect(cm.read(7, 16n, view)).toBe(false);
      expect(cm.lastRefusal).toMatch(/EFAULT/);
      expect(cm.allowed(7)).toBe(false);
      expect(cm.read(7, h.address, view)).toBe(false);
    } finally {
      h.kill();
    }
  });

  it('fails with the kernel\'s errno for unmapped memory and missing processes, touching nothing', () => {
    const dst = new Uint8Array(64).fill(9);
    expectNativeError(() => vmRead(process.pid, 16n, dst, 0, 64), 'EFAULT', 'process_vm_readv');
    expect(dst.every((v) => v === 9)).toBe(true);
    expectNativeError(() => vmRead(4_194_303, 4096n, dst, 0, 8), 'ESRCH', 'process_vm_readv');
  });

  it('rejects bad arguments as programming errors', () => {
    const dst = new Uint8Array(8);
    expect(() => vmRead(0, 1n, dst, 0, 1)).toThrow(RangeError);
    expect(() => vmRead(process.pid, 1 as unknown as bigint, dst, 0, 1)).toThrow(TypeError);
    expect(() => vmRead(process.pid, -1n, dst, 0, 1)).toThrow(RangeError);
    expect(() => vmRead(process.pid, memAddress(dst), dst, 4, 5)).toThrow(RangeError);
    expect(() => vmRead(process.pid, 2n ** 64n - 2n, dst, 0, 8)).toThrow(RangeError);
    expect(() => memAddress({} as Uint8Array)).toThrow(TypeError);
  });
});
