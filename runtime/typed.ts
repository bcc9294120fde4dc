// The typed-array kinds, once: their constructors, the names peers announce them by, and their
// codec numbers on the wire. The codec (codec.ts) and the collectives (collectives/op.ts) read it.

import { Codec } from './codec-ids.js';

export type AnyTypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

export interface TypedCtor {
  new (length: number): AnyTypedArray;
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): AnyTypedArray;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
  readonly prototype: AnyTypedArray;
}

/** Every kind: its constructor and its codec number. The name is the constructor's. */
const KINDS: ReadonlyArray<readonly [TypedCtor, Codec]> = [
  [Int8Array, Codec.Int8],
  [Uint8Array, Codec.Uint8],
  [Uint8ClampedArray, Codec.Uint8Clamped],
  [Int16Array, Codec.Int16],
  [Uint16Array, Codec.Uint16],
  [Int32Array, Codec.Int32],
  [Uint32Array, Codec.Uint32],
  [Float32Array, Codec.Float32],
  [Float64Array, Codec.Float64],
  [BigInt64Array, Codec.BigInt64],
  [BigUint64Array, Codec.BigUint64],
] as ReadonlyArray<readonly [TypedCtor, Codec]>;

export type Kind =
  | 'Int8Array'
  | 'Uint8Array'
  | 'Uint8ClampedArray'
  | 'Int16Array'
  | 'Uint16Array'
  | 'Int32Array'
  | 'Uint32Array'
  | 'Float32Array'
  | 'Float64Array'
  | 'BigInt64Array'
  | 'BigUint64Array';

/** Codec number → constructor. */
export const CTOR_OF_CODEC: ReadonlyArray<TypedCtor | undefined> = (() => {
  const a: Array<TypedCtor | undefined> = [];
  for (const [ctor, codec] of KINDS) a[codec] = ctor;
  return a;
})();
/** Exact prototype → codec number (subclasses such as Buffer are not in it). */
export const CODEC_OF_PROTO: ReadonlyMap<unknown, Codec> = new Map(KINDS.map(([ctor, codec]) => [ctor.prototype, codec]));
/** Kind name → constructor. */
export const CTOR_OF_KIND: ReadonlyMap<string, TypedCtor> = new Map(KINDS.map(([ctor]) => [ctor.name, ctor]));
const KIND_OF_PROTO: ReadonlyMap<unknown, Kind> = new Map(KINDS.map(([ctor]) => [ctor.prototype, ctor.name as Kind]));

/** Every (constructor, codec) pair, for tables keyed by either. */
export function eachKind(f: (ctor: TypedCtor, codec: Codec) => void): void {
  for (const [ctor, codec] of KINDS) f(ctor, codec);
}

/**
 * The element kind of a typed array ('Float64Array', ...; a Buffer counts as 'Uint8Array'), or
 * undefined for anything else (DataView, ArrayBuffer, plain values).
 */
export function typedKind(x: unknown): Kind | undefined {
  if (!ArrayBuffer.isView(x) || x instanceof DataView) return undefined;
  const own: unknown = Object.getPrototypeOf(x);
  if (own === lastProto) return lastKind;
  let proto = own;
  let kind: Kind | undefined;
  // Buffer (and other subclasses): walk up to the built-in kind.
  for (let i = 0; i < 4 && proto !== null && kind === undefined; i++) {
    kind = KIND_OF_PROTO.get(proto);
    proto = Object.getPrototypeOf(proto);
  }
  lastProto = own;
  lastKind = kind;
  return kind;
}

/**
 * The last prototype typedKind() was asked about, and its answer: a loop over arrays of one kind
 * (a collective's calls, every piece of a message) looks nothing up. A Map lookup per call was a
 * measurable part of a small allreduce (perf, docs/performance.md, stop 31).
 */
let lastProto: unknown = null;
let lastKind: Kind | undefined;

/** Whether a value travels as raw bytes (typed arrays, DataView, Buffer, ArrayBuffer), arriving as the same type and length. */
export function isRaw(value: unknown): value is ArrayBufferView | ArrayBuffer {
  return ArrayBuffer.isView(value) || value instanceof ArrayBuffer;
}

/** The element count of a typed array; undefined for anything else (a DataView included). */
export function elementsOf(v: unknown): number | undefined {
  return ArrayBuffer.isView(v) && !(v instanceof DataView) ? (v as unknown as { length: number }).length : undefined;
}

/** The bytes of a view; a plain Uint8Array is its own (no `.buffer` read, no new view). */
export function asBytes(v: ArrayBufferView): Uint8Array {
  return Object.getPrototypeOf(v) === Uint8Array.prototype ? (v as Uint8Array) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}
