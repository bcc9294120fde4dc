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
}
export const CODEC_MAX = 14;
