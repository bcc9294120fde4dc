import { describe, expect, it } from 'vitest';
import { allocatorEnv } from '../../launcher/allocator.js';

describe("the ranks' allocator settings", () => {
  it('keeps large fresh buffers on the heap and the heap untrimmed by default', () => {
    expect(allocatorEnv({ PATH: '/bin' })).toEqual({ MALLOC_MMAP_THRESHOLD_: String(32 << 20), MALLOC_TRIM_THRESHOLD_: String(128 << 20) });
  });
  it("adds nothing when the user chose any malloc setting", () => {
    expect(allocatorEnv({ MALLOC_TRIM_THRESHOLD_: '0' })).toEqual({});
    expect(allocatorEnv({ MALLOC_ARENA_MAX: '2' })).toEqual({});
    expect(allocatorEnv({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=4096' })).toEqual({});
    expect(allocatorEnv({ GLIBC_TUNABLES: 'glibc.pthread.rseq=0' })).not.toEqual({});
  });
});
