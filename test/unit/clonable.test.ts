import { describe, expect, it } from 'vitest';
import { examine, newWalk, refusal } from '../../runtime/clonable.js';
import { Codec, encode } from '../../runtime/codec.js';
import { decodeLocal } from '../helpers/local-decode.js';

describe('values structured clone refuses', () => {
  const refused: Array<[string, unknown, RegExp]> = [
    ['a function', () => 1, /a function/],
    ['a method in an object', { f() {} }, /a function \(f\)/],
    ['a WeakMap', new WeakMap(), /a WeakMap/],
    ['a WeakSet', new WeakSet(), /a WeakSet/],
    ['a symbol', Symbol('s'), /a symbol \(s\)/],
    ['a Promise deep inside', { a: [1, { b: Promise.resolve() }] }, /a Promise/],
    ['a WeakRef as a Map value', new Map([[1, new WeakRef({})]]), /a WeakRef/],
    ['a function as a Map key', new Map([[() => 0, 1]]), /a function/],
    ['a function in a Set', [new Set([() => 2])], /a function/],
    ['a Proxy', new Proxy({}, {}), /a Proxy/],
    ['a FinalizationRegistry', new FinalizationRegistry(() => {}), /a FinalizationRegistry/],
  ];
  it.each(refused)('%s: encode throws ERR_IVCOM_UNSERIALIZABLE, and structuredClone throws too', (_what, v, msg) => {
    expect(() => structuredClone(v)).toThrow();
    expect(refusal(v)?.what).toMatch(msg);
    expect(() => encode(v)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_UNSERIALIZABLE', message: expect.stringMatching(msg) }));
  });

  it('finds them past a cycle, in a deep value and in a widely shared one', () => {
    const cyc: Record<string, unknown> = { a: 1 };
    cyc.self = cyc;
    expect(refusal(cyc)).toBeUndefined();
    cyc.z = Symbol('late');
    expect(refusal(cyc)?.what).toMatch(/a symbol \(late\)/);
    let deep: Record<string, unknown> = { f: () => 0 };
    for (let i = 0; i < 400; i++) deep = { n: deep };
    expect(refusal(deep)?.what).toMatch(/a function/);
    for (let i = 0; i < 20_000; i++) deep = { n: deep };
    expect(refusal(deep)).toEqual({ tooDeep: true, what: 'a value nested more than 512 levels deep' });
    let shared: unknown[] = [1];
    for (let i = 0; i < 40; i++) shared = [shared, shared]; // 2^40 paths, 41 objects
    expect(refusal(shared)).toBeUndefined();
  });

  it('lets through everything structured clone carries', () => {
    const e = new Error('x');
    for (const v of [
      { op: 'x', seq: 1, data: [1.5, 2.5] },
      [1, , 3],
      new Map([[{ k: 1 }, new Set([new Date(0), /re/g])]]),
      e,
      new (class Point { x = 1; y = 2 })(),
      Object.create(null),
      new Uint8Array(4),
      new Number(3),
      10n ** 30n,
      undefined,
    ]) {
      expect(() => structuredClone(v)).not.toThrow();
      expect(refusal(v)).toBeUndefined();
    }
  });
});

describe('plain data (encoded without structured cloning)', () => {
  const plainOf = (v: unknown) => {
    const w = newWalk();
    examine(v, w);
    return w.plain;
  };
  it('takes JSON-like values whose containers are each reached once', () => {
    for (const v of [
      { op: 'x', seq: 1, tag: 7, data: [1.5, 2.5] },
      'a string',
      3.25,
      NaN,
      true,
      null,
      [],
      {},
      [[1, [2, [3]]], { a: { b: { c: null } } }],
      Array.from({ length: 10_000 }, (_, i) => i), // one container, however long
      Array.from({ length: 15 }, (_, i) => ({ i })), // 16 containers
    ]) {
      expect(plainOf(v), JSON.stringify(v).slice(0, 60)).toBe(true);
      const e = encode(v);
      expect(e.codec).toBe(Codec.MsgpackShaped);
      const back = decodeLocal(e.codec, e.bytes.slice(), 1);
      expect(back).toStrictEqual(v);
    }
  });
  it('leaves everything else to structured cloning, which keeps what plain encoding would lose', () => {
    const shared = { s: 1 };
    const cyclic: Record<string, unknown> = { c: 1 };
    cyclic.self = cyclic;
    const nullProto = Object.assign(Object.create(null), { a: 1 });
    for (const [what, v] of [
      ['an object reached twice', [shared, { again: shared }]],
      ['a cycle', cyclic],
      ['a Map inside', { m: new Map([[1, 2]]) }],
      ['a Set', new Set([1])],
      ['a Date inside', [new Date(0)]],
      ['undefined inside', { u: undefined }],
      ['undefined', undefined],
      ['a bigint', { b: 1n }],
      ['an object without a prototype', nullProto],
      ['a class instance', new (class P { x = 1 })()],
      ['an array with a hole', [1, , 3]],
      ['an own __proto__ key', JSON.parse('{"__proto__": {"p": 1}}')],
      ['a typed array inside', { t: new Float64Array(2) }],
      ['more than 16 containers', Array.from({ length: 16 }, (_, i) => ({ i }))],
      ['a value too deep for the quick walk', JSON.parse('['.repeat(40) + ']'.repeat(40))],
    ] as Array<[string, unknown]>) {
      expect(plainOf(v), what).toBe(false);
      if (v !== undefined && !(ArrayBuffer.isView(v) || v instanceof ArrayBuffer)) expect(encode(v).codec, what).toBe(Codec.Msgpack);
    }
    // The walks' list of containers is kept between walks: one walk's containers are not the next's.
    const again = { s: 2 };
    expect(plainOf([again, { again }])).toBe(false);
    expect(plainOf([{ s: 2 }, { again: { s: 2 } }])).toBe(true);
    expect(plainOf([again])).toBe(true);
    // A getter the walk reaches may walk another value meanwhile (a send inside it): each walk
    // keeps its own list, so the outer one still sees its object reached twice.
    let inner: boolean | undefined;
    const withGetter = {
      a: shared,
      get b() {
        inner = plainOf([{ x: 1 }, { y: [2] }]);
        return 1;
      },
      c: shared,
    };
    expect(plainOf(withGetter)).toBe(false);
    expect(inner).toBe(true);
    // A getter that throws ends the walk; the next walks still judge by their own containers.
    const throwing = {
      a: again,
      get b(): number {
        throw new Error('getter');
      },
    };
    expect(() => plainOf(throwing)).toThrow('getter');
    expect(plainOf([again, { again }])).toBe(false);
    expect(plainOf([{ s: 3 }, { s: 3 }])).toBe(true);
    // What plain encoding would have lost: the shared object arrives as one object.
    const e = encode([shared, { again: shared }]);
    const back = decodeLocal(e.codec, e.bytes.slice(), 1) as [object, { again: object }];
    expect(back[0]).toBe(back[1].again);
  });
});
