// --verify: the CRC-32C (native and table), the trailer the wrappers add and check, and a live
// channel whose payload bytes are scribbled between send and receive.

import { describe, expect, it } from 'vitest';
import type { Endpoint, IncomingMessage, OutgoingMessage, Upcalls } from '../../transport/transport.js';
import { CTRL_BYTES, RECORD_HEADER_BYTES } from '../../transport/ivcom/layout.js';
import { Codec } from '../../runtime/codec-ids.js';
import { checksumParts, crc32cJs, TRAILER_BYTES, verifyFromEnv, verifyingEndpoint, verifyingUpcalls, type Checksum } from '../../runtime/verify.js';
import { makePair, msg, pattern, rng, sameBytes, type Side } from './ivcom-helpers.js';

let native: Checksum | undefined;
try {
  native = (await import('../../kmod/index.js')).crc32c;
} catch {
  native = undefined; // the addon is not built: only the table version is checked
}
const impls: [string, Checksum | undefined][] = [
  ['table (JS)', crc32cJs],
  ['native', native],
];

const bytes = (s: string) => new TextEncoder().encode(s);

describe.each(impls)('CRC-32C, %s', (_name, crc) => {
  it.skipIf(crc === undefined)('gives the published check values', () => {
    const c = crc!;
    // The catalogue's check value, and RFC 3720 (iSCSI) B.4's vectors.
    expect(c(bytes('123456789'))).toBe(0xe3069283);
    expect(c(new Uint8Array(0))).toBe(0);
    expect(c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });

  it.skipIf(crc === undefined)('chains across parts and agrees with the table at every length and alignment', () => {
    const c = crc!;
    const r = rng(7);
    const big = pattern(70_000, 3);
    for (let i = 0; i < 200; i++) {
      const off = Math.floor(r() * 16);
      const len = Math.floor(r() * (i < 100 ? 40 : 69_000));
      const v = big.subarray(off, off + len);
      const cut = Math.floor(r() * (len + 1));
      expect(c(v)).toBe(crc32cJs(v));
      expect(c(v.subarray(cut), c(v.subarray(0, cut)))).toBe(c(v));
      expect(checksumParts(c, [v.subarray(0, cut), v.subarray(cut)])).toBe(c(v));
    }
    // Around the native version's block boundaries (3 x 256 and 3 x 8192 bytes: chains joined).
    for (const len of [767, 768, 769, 24_575, 24_576, 24_577, 49_152 + 768 + 9]) {
      for (const off of [0, 3]) expect(c(big.subarray(off, off + len))).toBe(crc32cJs(big.subarray(off, off + len)));
    }
    // Any typed array: its bytes.
    expect(c(new Uint32Array([0x34333231, 0x38373635]))).toBe(c(bytes('12345678')));
  });
});

/** An endpoint that hands what it is sent to `into`, as a transport would deliver it. */
function loopback(into: (m: IncomingMessage) => void, eagerLimit = 1000): Endpoint {
  return {
    peer: 1,
    caps: { name: 'ivcom', eagerLimit, maxFrame: eagerLimit, latencyClass: 'memory' },
    send(m: OutgoingMessage) {
      const payload = new Uint8Array(m.byteLength);
      let o = 0;
      for (const p of m.parts) {
        payload.set(p, o);
        o += p.byteLength;
      }
      into({ ctx: m.ctx, source: 1, tag: m.tag, codec: m.codec, payload, seq: 0 });
      return undefined;
    },
  };
}

function receiver(crc: Checksum) {
  const got: IncomingMessage[] = [];
  const fails: Error[] = [];
  const base: Upcalls = {
    deliver: (m) => got.push(m),
    fail: (e) => fails.push(e),
    allocate: () => new Uint8Array(0),
    stage: () => new Uint8Array(0),
  };
  return { got, fails, up: verifyingUpcalls(base, crc, 0) };
}

const out = (payload: Uint8Array[], codec = Codec.Uint8, tag = 3): OutgoingMessage => ({
  ctx: 0,
  source: 1,
  tag,
  codec,
  parts: payload,
  byteLength: payload.reduce((s, p) => s + p.byteLength, 0),
});

describe('verify trailer', () => {
  it('round-trips messages of every size and part count; DATA frames travel untouched', () => {
    const { got, fails, up } = receiver(crc32cJs);
    const wire: number[] = [];
    const ep = verifyingEndpoint(
      loopback((m) => {
        wire.push(m.payload.byteLength);
        up.deliver(m);
      }),
      crc32cJs,
    );
    expect(ep.caps.eagerLimit).toBe(1000 - TRAILER_BYTES);
    const sent = [new Uint8Array(0), pattern(1, 1), pattern(333, 2)];
    for (const p of sent) ep.send(out([p]));
    ep.send(out([pattern(10, 3), new Uint8Array(0), pattern(7, 4)]));
    ep.send(out([pattern(50, 5)], Codec.Data));
    expect(fails).toEqual([]);
    expect(wire).toEqual([4, 5, 337, 21, 50]);
    expect(got.map((m) => m.payload.byteLength)).toEqual([0, 1, 333, 17, 50]);
    for (let i = 0; i < 3; i++) expect(sameBytes(got[i]!.payload, sent[i]!)).toBe(true);
    expect(sameBytes(got[3]!.payload, Uint8Array.from([...pattern(10, 3), ...pattern(7, 4)]))).toBe(true);
  });

  it('assembles trailed messages where the transport likes, DATA where the receive asks', () => {
    const { up } = receiver(crc32cJs);
    const h = { ctx: 0, source: 1, tag: 0, byteLength: 8192 };
    expect(up.allocate!({ ...h, codec: Codec.Uint8 })).toBeUndefined();
    expect(up.stage!({ ...h, codec: Codec.Rts })).toBeUndefined();
    expect(up.allocate!({ ...h, codec: Codec.Data })).toBeInstanceOf(Uint8Array);
  });

  it('a changed byte, trailer byte or a message too short is ERR_IVCOM_CORRUPT naming the peer, and is not delivered', () => {
    for (const spoil of [
      (p: Uint8Array) => p.subarray(0, p.byteLength).map((b, i) => (i === 5 ? b ^ 0x10 : b)),
      (p: Uint8Array) => p.map((b, i) => (i === p.byteLength - 1 ? b ^ 1 : b)),
      (p: Uint8Array) => p.subarray(0, 3),
    ]) {
      const { got, fails, up } = receiver(crc32cJs);
      const ep = verifyingEndpoint(
        loopback((m) => up.deliver({ ...m, payload: spoil(m.payload) })),
        crc32cJs,
      );
      ep.send(out([pattern(64, 9)]));
      expect(got).toEqual([]);
      expect(fails.length).toBe(1);
      const e = fails[0] as Error & { code?: string; peer?: number; rank?: number };
      expect(e.code).toBe('ERR_IVCOM_CORRUPT');
      expect(e.peer).toBe(1);
      expect(e.rank).toBe(0);
      expect(e.message).toMatch(/from rank 1 failed its end-to-end checksum/);
      expect(e.message).toMatch(/scribbled/);
    }
  });

  it('IVCOM_VERIFY takes 1 or 0, nothing else', () => {
    expect(verifyFromEnv(undefined, 0)).toBe(false);
    expect(verifyFromEnv('', 0)).toBe(false);
    expect(verifyFromEnv('0', 0)).toBe(false);
    expect(verifyFromEnv('1', 0)).toBe(true);
    expect(() => verifyFromEnv('yes', 2)).toThrow(/rank 2: IVCOM_VERIFY must be 1/);
  });
});

describe('verify over a live ivcom channel', () => {
  /** Endpoint over one side of a channel pair (what the transport gives the runtime). */
  const endpointOf = (s: Side, peer: number): Endpoint => ({
    peer,
    caps: { name: 'ivcom', eagerLimit: s.ch.chunkBytes, maxFrame: s.ch.chunkBytes, latencyClass: 'memory' },
    send: (m) => s.ch.send(m),
  });

  for (const verify of [false, true]) {
    it(`payload bytes scribbled between send and receive are ${verify ? 'ERR_IVCOM_CORRUPT' : 'delivered as data'} ${verify ? 'with' : 'without'} verify`, () => {
      const { sab, a, b } = makePair({ ringBytes: 64 * 1024 });
      const fails: Error[] = [];
      const got: IncomingMessage[] = [];
      // b's deliveries go through the verifying upcalls when verify is on.
      const up: Upcalls = verify
        ? verifyingUpcalls({ deliver: (m) => got.push(m), fail: (e) => fails.push(e) }, crc32cJs, 1)
        : { deliver: (m) => got.push(m), fail: (e) => fails.push(e) };
      const ep = verify ? verifyingEndpoint(endpointOf(a, 1), crc32cJs) : endpointOf(a, 1);
      const sent = pattern(1000, 11);
      expect(ep.send(out([sent]))).toBeUndefined();
      // The message is in ring 0 (A→B), not yet read: a hostile third party flips payload bytes.
      const u8 = new Uint8Array(sab);
      for (const i of [0, 17, 500, 999]) u8[CTRL_BYTES + RECORD_HEADER_BYTES + i] ^= 0x5a;
      b.ch.poll();
      for (const m of b.got) up.deliver(m);
      expect(b.fails).toEqual([]); // the ring's own checks pass: headers and indices are intact
      if (!verify) {
        expect(fails).toEqual([]);
        expect(got.length).toBe(1);
        expect(got[0]!.payload.byteLength).toBe(1000);
        expect(sameBytes(got[0]!.payload, sent)).toBe(false);
      } else {
        expect(got).toEqual([]);
        expect(fails.map((e) => [(e as { code?: string }).code, (e as { peer?: number }).peer])).toEqual([['ERR_IVCOM_CORRUPT', 0]]);
      }
    });
  }
});
