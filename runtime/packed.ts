// msgpackr's output as a view a send may keep. msgpackr returns `target.subarray(start, end)` of
// its own output Buffer: a Buffer (FastBuffer, a subclass of Uint8Array) made by a class
// construction and a read of `.buffer`, which on Node 20 is a call into C++; with a small object's
// encoding taking ~0.3 µs, both were a tenth of it (perf, docs/performance.md, stop 31). Asked to
// hand back its Buffer instead (REUSE_BUFFER_MODE, which says where the output starts and ends),
// a small output is copied into a fresh array V8 keeps on its heap: a few dozen bytes, no
// backing store, no class. msgpackr writes its next output after this one, as before, so a
// larger output stays a view of msgpackr's Buffer, as msgpackr itself would return it.
//
// Only for packers without structured cloning: with it, an output that refers back to an earlier
// object is rebuilt into a new Buffer, returned without start and end.

import { REUSE_BUFFER_MODE, type Packr } from 'msgpackr';

/** V8 keeps typed arrays of up to 64 bytes on its heap (typed_array_max_size_in_heap). */
export const ON_HEAP_MAX = 64;

type Output = Buffer & { start: number; end: number };

/** `value` packed by `p` (no structuredClone), as bytes the caller may keep (msgpackr's later outputs go elsewhere). */
export function packed(p: Packr, value: unknown): Uint8Array {
  const t = p.pack(value, REUSE_BUFFER_MODE) as Output;
  const start = t.start;
  const n = t.end - start;
  if (n > ON_HEAP_MAX) return t.subarray(start, start + n);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = t[start + i]!;
  return out;
}
