import { closeSync, ftruncateSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { closeFd, segmentCreate, segmentMap } from '../../kmod/index.js';
import { expectNativeError } from './helpers.js';

describe('memfd segments', () => {
  it('maps one segment twice as SharedArrayBuffers that see each other, with working Atomics', () => {
    const fd = segmentCreate('ivcom-test', 4096);
    const a = segmentMap(fd, 4096);
    const b = segmentMap(fd, 4096);
    closeFd(fd); // the mappings outlive the fd
    expect(a).toBeInstanceOf(SharedArrayBuffer);
    expect(a.byteLength).toBe(4096);
    const va = new Int32Array(a);
    const vb = new Int32Array(b);
    va[10] = 1234;
    expect(vb[10]).toBe(1234);
    expect(Atomics.add(vb, 1023, 5)).toBe(0);
    expect(Atomics.compareExchange(va, 1023, 5, 9)).toBe(5);
    expect(Atomics.load(vb, 1023)).toBe(9);
    expect(Atomics.notify(va, 0, 1)).toBe(0);
    expect(Atomics.wait(vb, 0, 1, 0)).toBe('not-equal');
  });

  it('maps large segments (huge-page advice path) end to end', () => {
    const bytes = 8 << 20;
    const fd = segmentCreate('ivcom-big', bytes);
    const view = new Uint8Array(segmentMap(fd, bytes));
    view[bytes - 1] = 7;
    expect(new Uint8Array(segmentMap(fd, bytes))[bytes - 1]).toBe(7);
    closeFd(fd);
  });

  it('is sealed: nobody can shrink or grow it', () => {
    const fd = segmentCreate('ivcom-sealed', 8192);
    try {
      expect(() => ftruncateSync(fd, 4096)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      expect(() => ftruncateSync(fd, 16384)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      expect(() => ftruncateSync(fd, 0)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    } finally {
      closeFd(fd);
    }
  });

  it('leaves nothing in /dev/shm and is an anonymous memfd', () => {
    const before = readdirSync('/dev/shm').sort();
    const fd = segmentCreate('ivcom-noshm', 4096);
    try {
      expect(readdirSync('/dev/shm').sort()).toEqual(before);
      expect(readlinkSync(`/proc/self/fd/${fd}`)).toMatch(/^\/memfd:ivcom-noshm/);
    } finally {
      closeFd(fd);
    }
  });

  it('rejects a segment whose size differs from the expected one', () => {
    const fd = segmentCreate('ivcom-size', 4096);
    try {
      expectNativeError(() => segmentMap(fd, 8192), 'EINVAL', 'segmentMap', /size 4096 bytes, expected 8192/);
      expectNativeError(() => segmentMap(fd, 1024), 'EINVAL', 'segmentMap');
    } finally {
      closeFd(fd);
    }
  });

  it('rejects an unsealed fd (a plain file) as hostile input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ivcom-kmod-'));
    const file = join(dir, 'plain');
    writeFileSync(file, Buffer.alloc(4096));
    const fd = openSync(file, 'r+');
    try {
      expectNativeError(() => segmentMap(fd, 4096), 'EINVAL', 'segmentMap', /not sealed/);
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true });
    }
  });

  it('reports system-call failures with code, errno and syscall', () => {
    expectNativeError(() => closeFd(-1), 'EBADF', 'close', /^close failed: Bad file descriptor \(EBADF\)$/);
    expectNativeError(() => segmentMap(100000, 4096), 'EBADF', 'fstat');
    // memfd names are limited to 249 bytes by the kernel
    expectNativeError(() => segmentCreate('x'.repeat(300), 4096), 'EINVAL', 'memfd_create');
  });

  it('rejects bad arguments as TypeError/RangeError, not as system errors', () => {
    expect(() => segmentCreate(1 as unknown as string, 4096)).toThrow(TypeError);
    expect(() => segmentCreate('x', -1)).toThrow(RangeError);
    expect(() => segmentCreate('x', 1.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => segmentMap(0, 0)).toThrow(RangeError);
    expect(() => closeFd('3' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
