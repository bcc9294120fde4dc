import { describe, expect, it } from 'vitest';
import { typedKind } from '../../runtime/typed.js';

describe('typedKind', () => {
  it('names each kind right when kinds alternate (it keeps its last answer), subclasses and Buffer included', () => {
    class Mine extends Float32Array {}
    const cases: Array<[unknown, string | undefined]> = [
      [new Float64Array(1), 'Float64Array'],
      [new Float64Array(2), 'Float64Array'],
      [Buffer.alloc(1), 'Uint8Array'],
      [new Uint8Array(1), 'Uint8Array'],
      [new Mine(1), 'Float32Array'],
      [new DataView(new ArrayBuffer(1)), undefined],
      [new BigInt64Array(1), 'BigInt64Array'],
      [[1, 2], undefined],
      [new Int8Array(1), 'Int8Array'],
      [Buffer.alloc(2), 'Uint8Array'],
    ];
    for (let round = 0; round < 2; round++) for (const [v, kind] of cases) expect(typedKind(v)).toBe(kind);
  });
});
