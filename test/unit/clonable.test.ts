import { describe, expect, it } from 'vitest';
import { refusal } from '../../runtime/clonable.js';
import { encode } from '../../runtime/codec.js';

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
