// The codec numbers carried in every frame header: how the receiver rebuilds a payload.

export const enum Codec {
  Msgpack = 0,
  ArrayBuffer = 1,
  DataView = 2,
  Buffer = 3,
  Int8 = 4,
  Uint8 = 5,
  Uint8Clamped = 6,
  Int16 = 7,
  Uint16 = 8,
  Int32 = 9,
  Uint32 = 10,
  Float32 = 11,
  Float64 = 12,
  BigInt64 = 13,
  BigUint64 = 14,
  // A value of plain data only (see clonable.ts): msgpack without structured cloning's records.
  MsgpackPlain = 15,
  // Plain data as records of object shapes the sender announced beforehand (shapes.ts).
  MsgpackShaped = 16,
  // The sender's object shapes a peer does not know yet (shapes.ts): never matched or decoded as data.
  Shapes = 249,
  // Large-message protocol frames (rendezvous.ts): never decoded as data. Only an RTS is matched.
  Rts = 250,
  Cts = 251,
  Fin = 252,
  Data = 253,
  // A copy both ranks of a pair take part in (shared-copy.ts).
  Help = 254,
  Copied = 255,
}
export const CODEC_MAX = 16;
