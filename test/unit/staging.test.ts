// Staging memory for large unexpected messages: reused after recvInto copies out, handed over
// for good when recv returns it, bounded.

import { describe, expect, it } from 'vitest';
import { STAGING_MIN_BYTES, StagingPool } from '../../runtime/staging.js';

describe('staging pool', () => {
  it('stages only large messages, in views of exactly the asked size', () => {
    const pool = new StagingPool();
    expect(pool.take(STAGING_MIN_BYTES - 1)).toBeUndefined();
    const v = pool.take(STAGING_MIN_BYTES + 8)!;
    expect(v.byteLength).toBe(STAGING_MIN_BYTES + 8);
    expect(v.byteOffset).toBe(0);
  });

  it('reuses a buffer given back, for a message of the same size only', () => {
    const pool = new StagingPool();
    const n = 1 << 20;
    const a = pool.take(n)!;
    pool.give(a);
    expect(pool.take(n)!.buffer).toBe(a.buffer);
    const b = pool.take(n)!;
    expect(b.buffer).not.toBe(a.buffer); // the first is lent again
    pool.give(b);
    expect(pool.take(2 * n)!.buffer).not.toBe(b.buffer);
  });

  it('never lends again a buffer that became a result, nor one given twice', () => {
    const pool = new StagingPool();
    const n = 1 << 20;
    const a = pool.take(n)!;
    pool.forget(a); // recv handed it to the program
    pool.give(a);
    expect(pool.take(n)!.buffer).not.toBe(a.buffer);
    const b = pool.take(n)!;
    pool.give(b);
    pool.give(b);
    const c = pool.take(n)!;
    const d = pool.take(n)!;
    expect(c.buffer).toBe(b.buffer);
    expect(d.buffer).not.toBe(b.buffer);
  });

  it('keeps at most 64 MiB for reuse', () => {
    const pool = new StagingPool();
    const n = 4 << 20;
    const lent = Array.from({ length: 20 }, () => pool.take(n)!);
    for (const v of lent) pool.give(v);
    const again = Array.from({ length: 20 }, () => pool.take(n)!);
    const reused = again.filter((v) => lent.some((l) => l.buffer === v.buffer)).length;
    expect(reused).toBe(16);
  });
});
