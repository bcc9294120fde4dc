// Records of object shapes (runtime/shapes.ts): what a receiver must be told, what it refuses,
// and the bound on the table. The table is the process's: the test that fills it runs last.
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Codec, decode, encode } from '../../runtime/codec.js';
import { MAX_SHAPES, PeerShapes } from '../../runtime/shapes.js';

const SENDER = 3;
const corrupt = (what: RegExp) => expect.objectContaining({ code: 'ERR_IVCOM_CORRUPT', peer: SENDER, message: expect.stringMatching(what) });

describe('object shapes', () => {
  it('sends a plain object as a record and tells each peer its shapes once, before it needs them', () => {
    const e = encode({ op: 'x', seq: 1, tag: 7, data: [1.5, 2.5] });
    expect(e.codec).toBe(Codec.MsgpackShaped);
    const bytes = e.bytes.slice();
    // Shorter than the same object as a plain map (the keys are not spelled out).
    expect(bytes.byteLength).toBeLessThan(new Packr({ useRecords: false }).pack({ op: 'x', seq: 1, tag: 7, data: [1.5, 2.5] }).byteLength);

    const sender = new PeerShapes(SENDER, 8);
    const receiver = new PeerShapes(5, 8);
    // A receiver that was not told the shape refuses the message instead of misreading it.
    expect(() => decode(e.codec, bytes, SENDER, receiver)).toThrow(corrupt(/names an object shape it never announced/));

    expect(sender.behind(5)).toBe(true);
    receiver.learn(SENDER, sender.announce(5));
    expect(sender.behind(5)).toBe(false);
    expect(sender.behind(6)).toBe(true); // told per peer
    expect(decode(e.codec, bytes, SENDER, receiver)).toStrictEqual({ op: 'x', seq: 1, tag: 7, data: [1.5, 2.5] });
    // Another sender's shapes are another table.
    expect(() => decode(e.codec, bytes, 4, receiver)).toThrow(expect.objectContaining({ code: 'ERR_IVCOM_CORRUPT', peer: 4 }));
  });

  it('decodes messages in any order once their shapes arrived, and tells only what is new', () => {
    const sender = new PeerShapes(SENDER, 8);
    const receiver = new PeerShapes(5, 8);
    receiver.learn(SENDER, sender.announce(5));
    // encode() refills one result object: keep each message's codec and bytes.
    const keep = (e: { codec: number; bytes: Uint8Array }) => ({ codec: e.codec, bytes: e.bytes.slice() });
    const a = keep(encode({ first: 1, inner: { deep: 'a' } }));
    const b = keep(encode([{ second: 2 }, { second: 3, more: true }]));
    const told = sender.announce(5);
    receiver.learn(SENDER, told);
    // Only the shapes since the last frame: first, inner, second and {second, more}.
    expect(new Packr({ useRecords: false }).unpack(told)).toHaveLength(4);
    expect(decode(b.codec, b.bytes, SENDER, receiver)).toStrictEqual([{ second: 2 }, { second: 3, more: true }]);
    expect(decode(a.codec, a.bytes, SENDER, receiver)).toStrictEqual({ first: 1, inner: { deep: 'a' } });
  });

  it('refuses shape frames that are not lists of keys, or that would overfill the table, naming the peer', () => {
    const receiver = new PeerShapes(5, 8);
    const pack = (v: unknown) => new Packr({ useRecords: false }).pack(v);
    expect(() => receiver.learn(SENDER, new Uint8Array([0x92, 0x91]))).toThrow(corrupt(/could not be decoded/));
    expect(() => receiver.learn(SENDER, pack({ a: 1 }))).toThrow(corrupt(/not a list/));
    expect(() => receiver.learn(SENDER, pack([]))).toThrow(corrupt(/announced 0 object shapes/));
    expect(() => receiver.learn(SENDER, pack([['a', 1]]))).toThrow(corrupt(/not a list of keys/));
    expect(() => receiver.learn(SENDER, pack(['a']))).toThrow(corrupt(/not a list of keys/));
    expect(() => receiver.learn(SENDER, pack(Array.from({ length: MAX_SHAPES + 1 }, (_, i) => [`k${i}`])))).toThrow(corrupt(/at most 256/));
    receiver.learn(SENDER, pack(Array.from({ length: MAX_SHAPES }, (_, i) => [`k${i}`])));
    expect(() => receiver.learn(SENDER, pack([['one', 'more']]))).toThrow(corrupt(/1 object shapes after 256/));
  });

  it('stops adding shapes once the table is full: plain msgpack from then on, everything still decodable', () => {
    const sender = new PeerShapes(SENDER, 8);
    const receiver = new PeerShapes(5, 8);
    const sent: Array<{ codec: number; bytes: Uint8Array; value: unknown }> = [];
    for (let k = 0; k < MAX_SHAPES + 20; k++) {
      const value = { [`key${k}`]: k, same: true };
      const e = encode(value);
      if (e.codec === Codec.MsgpackShaped && sender.behind(5)) receiver.learn(SENDER, sender.announce(5));
      sent.push({ codec: e.codec, bytes: e.bytes.slice(), value });
    }
    expect(sent.at(-1)!.codec).toBe(Codec.MsgpackPlain);
    expect(sent.filter((s) => s.codec === Codec.MsgpackShaped).length).toBeLessThanOrEqual(MAX_SHAPES);
    for (const s of sent.reverse()) expect(decode(s.codec, s.bytes, SENDER, receiver)).toStrictEqual(s.value);
    // A shape already in the table is not a new one: nothing more to tell.
    expect(sender.behind(5)).toBe(false);
  });
});
