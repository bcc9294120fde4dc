import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { memAddress, vmRead, vmWrite } from '../../kmod/index.js';
import { CrossMemory } from '../../transport/cma.js';
import { expectNativeError, fixture } from './helpers.js';

const pattern = (i: number) => (i * 13 + 5) & 0xff;

async function holder(): Promise<{ pid: number; address: bigint; kill: () => void }> {
  const child = spawn(process.execPath, [fixture('child-cma.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const { pid, address } = JSON.parse(line.toString()) as { pid: number; address: string };
  return { pid, address: BigInt(address), kill: () => child.kill('SIGKILL') };
}

describe('native single copy (process_vm_readv, process_vm_writev)', () => {
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
      const cm = new CrossMemory({ memAddress, vmRead, vmWrite }, () => h.pid);
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

  it('writes a typed array\'s bytes straight into another process, from an offset', async () => {
    const h = await holder();
    try {
      const src = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7 + 1) & 0xff);
      vmWrite(h.pid, h.address + 3000n, src, 1000, 4000);
      const back = new Uint8Array(4002);
      vmRead(h.pid, h.address + 2999n, back, 0, back.length);
      expect(back[0]).toBe(pattern(2999)); // the bytes around it are untouched
      expect(Buffer.compare(back.subarray(1, 4001), src.subarray(1000))).toBe(0);
      expect(back[4001]).toBe(pattern(7000));
      const cm = new CrossMemory({ memAddress, vmRead, vmWrite }, () => h.pid);
      expect(cm.write(7, h.address, src, 0, 10)).toBe(true);
      expect(cm.write(7, 16n, src, 0, 10)).toBe(false);
      expect(cm.lastRefusal).toMatch(/EFAULT.*process_vm_writev|process_vm_writev.*EFAULT/);
      expect(cm.writable(7)).toBe(false);
      expect(cm.allowed(7)).toBe(true); // reads are judged on their own
    } finally {
      h.kill();
    }
    expectNativeError(() => vmWrite(process.pid, 16n, new Uint8Array(8), 0, 8), 'EFAULT', 'process_vm_writev');
    expect(() => vmWrite(process.pid, memAddress(new Uint8Array(8)), new Uint8Array(8), 4, 5)).toThrow(/past the end of src/);
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
