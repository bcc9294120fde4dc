// Reduction operators: the `Op` constants and the element-wise / scalar kernels behind them.
//
// Semantics (API.md, "Collectives"):
//  - numbers, booleans, bigints and every typed-array kind reduce natively; any other value needs
//    a function, else UnsupportedError naming the op and the value's type;
//  - typed arrays reduce element-wise into a result of the same type and length (integer kinds
//    wrap as the typed array stores them, Uint8ClampedArray clamps);
//  - LAND / LOR give booleans for scalars (truthiness of numbers, bigints, booleans) and 1 / 0
//    elements of the same kind for typed arrays;
//  - BAND / BOR / BXOR need integers: integer typed-array kinds, bigints, integral numbers
//    (any safe integer, not only 32-bit), or booleans (giving booleans);
//  - MIN / MAX on booleans are LAND / LOR; SUM / PROD on booleans count them as 1 / 0 (numbers);
//  - a custom function is taken as associative but NOT commutative: the collectives apply it in
//    rank order, `f(f(x0, x1), x2) ...`.
//
// Internally every contribution is first *prepared* (validated, normalized into the op's domain,
// and copied so that nothing aliases the caller's input); the combine step may then reuse the
// storage of its LEFT operand (typed arrays are reduced in place into `a`), never of `b`.

import { CollectiveMismatchError, InvalidArgTypeError, UnsupportedError } from '../errors.js';

/** A [value, index] pair, as MINLOC and MAXLOC take them. */
export type Loc = readonly [number | bigint | string, number];

function checkLoc(p: unknown, op: string): Loc {
  if (!Array.isArray(p) || p.length !== 2 || typeof p[1] !== 'number') {
    throw new InvalidArgTypeError(`${op} reduces [value, index] pairs, got ${Array.isArray(p) ? `an array of ${p.length}` : typeof p}`);
  }
  return p as unknown as Loc;
}

/** MPI_MINLOC: the least value and its index; on a tie, the lowest index. */
function minloc(a: Loc, b: Loc): Loc {
  checkLoc(a, 'MINLOC');
  checkLoc(b, 'MINLOC');
  return b[0] < a[0] || (b[0] === a[0] && b[1] < a[1]) ? b : a;
}

/** MPI_MAXLOC: the greatest value and its index; on a tie, the lowest index. */
function maxloc(a: Loc, b: Loc): Loc {
  checkLoc(a, 'MAXLOC');
  checkLoc(b, 'MAXLOC');
  return b[0] > a[0] || (b[0] === a[0] && b[1] < a[1]) ? b : a;
}

const NAMED = {
  SUM: 'SUM',
  PROD: 'PROD',
  MIN: 'MIN',
  MAX: 'MAX',
  LAND: 'LAND',
  LOR: 'LOR',
  BAND: 'BAND',
  BOR: 'BOR',
  BXOR: 'BXOR',
} as const;

export const Op = Object.freeze({ ...NAMED, MINLOC: minloc, MAXLOC: maxloc });
export type Op = typeof Op;
/** A built-in operator name (MINLOC and MAXLOC are functions: reduced like any function, in rank order). */
export type BuiltinOp = (typeof NAMED)[keyof typeof NAMED];
/** What every reducing collective accepts as `op`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type OpLike = BuiltinOp | ((a: any, b: any) => any);

/** The built-in ops in a fixed order (their index is their number where one is needed, host-slots.ts). */
export const BUILTIN_OPS: readonly BuiltinOp[] = Object.values(NAMED);
const BUILTINS: ReadonlySet<string> = new Set(BUILTIN_OPS);

import { CTOR_OF_KIND, typedKind, type AnyTypedArray, type Kind } from '../typed.js';

export { typedKind, type AnyTypedArray };

/** A name for a value's type, for error messages. */
export function typeName(x: unknown): string {
  if (x === null) return 'null';
  if (Buffer.isBuffer(x)) return 'Buffer';
  const k = typedKind(x);
  if (k !== undefined) return k;
  if (typeof x === 'object') {
    const c = (x as object).constructor;
    return c && typeof c.name === 'string' && c.name !== '' && c.name !== 'Object' ? c.name : 'object';
  }
  if (typeof x === 'number' && !Number.isInteger(x)) return `non-integer number (${x})`;
  return typeof x;
}

/** A new zeroed typed array of the same kind as `like` (a Buffer gives a Buffer). */
export function allocLike<T extends AnyTypedArray>(like: T, length: number): T {
  if (Buffer.isBuffer(like)) return Buffer.alloc(length) as unknown as T;
  const k = typedKind(like);
  if (k === undefined) throw new InvalidArgTypeError(`not a typed array: ${typeName(like)}`);
  return allocKind(k, length) as T;
}

export function allocKind(kind: string, length: number): AnyTypedArray {
  if (kind === 'Buffer') return Buffer.alloc(length);
  const ctor = CTOR_OF_KIND.get(kind);
  if (ctor === undefined) throw new CollectiveMismatchError(`unknown typed-array kind '${kind}' announced by a peer`);
  return new ctor(length);
}

/** A view of `length` elements of the same kind as `like` over `memory` (a Buffer gives a Uint8Array). */
export function viewLike<T extends AnyTypedArray>(like: T, memory: ArrayBuffer, length: number): T {
  const ctor = CTOR_OF_KIND.get(typedKind(like) ?? '');
  if (ctor === undefined) throw new InvalidArgTypeError(`not a typed array: ${typeName(like)}`);
  return new ctor(memory, 0, length) as T;
}

/** From this size on, memory about to be overwritten is not zeroed first (that costs as much as the copy). */
const UNZEROED_COPY_BYTES = 64 * 1024;

/**
 * A new typed array like `x` (same kind and length; a Buffer gives a Buffer) whose every element
 * the caller is about to write: large ones start from unzeroed memory.
 */
export function allocToOverwrite<T extends AnyTypedArray>(x: T): T {
  if (x.byteLength < UNZEROED_COPY_BYTES) return allocLike(x, x.length);
  const mem = Buffer.allocUnsafeSlow(x.byteLength);
  return (Buffer.isBuffer(x) ? mem : viewLike(x, mem.buffer as ArrayBuffer, x.length)) as T;
}

/** A copy of a typed array, same kind (Buffer stays Buffer), never sharing memory. */
export function copyTyped<T extends AnyTypedArray>(x: T): T {
  const out = allocToOverwrite(x);
  (out as unknown as { set(a: ArrayLike<unknown>): void }).set(x as ArrayLike<unknown>);
  return out;
}

// ------------------------------------------------------------------------------------------------
// Element-wise kernels. One generated function per (op, kind), so each loop stays monomorphic
// (a single hand-written generic loop goes megamorphic over the kinds: measured 25-40x slower per
// element on Node 20 for 32/64-bit kinds). Signature: (out, a, off, b, bOff, n) => void,
// computing out[off+i] = a[off+i] (op) b[bOff+i]; `out` may be `a` (in place).

export type Kernel = (out: AnyTypedArray, a: AnyTypedArray, off: number, b: AnyTypedArray, bOff: number, n: number) => void;

const FLOAT_KINDS: ReadonlySet<string> = new Set(['Float32Array', 'Float64Array']);
const BIG_KINDS: ReadonlySet<string> = new Set(['BigInt64Array', 'BigUint64Array']);

function kernelExpr(op: BuiltinOp, kind: Kind): string | undefined {
  const float = FLOAT_KINDS.has(kind);
  const big = BIG_KINDS.has(kind);
  const one = big ? '1n' : '1';
  const zero = big ? '0n' : '0';
  switch (op) {
    case 'SUM':
      return 'x + y';
    case 'PROD':
      // 32-bit products can exceed 2^53 in a double before wrapping: use imul.
      return kind === 'Int32Array' || kind === 'Uint32Array' ? 'Math.imul(x, y)' : 'x * y';
    case 'MIN':
      return float ? 'Math.min(x, y)' : 'y < x ? y : x';
    case 'MAX':
      return float ? 'Math.max(x, y)' : 'y > x ? y : x';
    case 'LAND':
      return `(x && y) ? ${one} : ${zero}`;
    case 'LOR':
      return `(x || y) ? ${one} : ${zero}`;
    case 'BAND':
      return float ? undefined : 'x & y';
    case 'BOR':
      return float ? undefined : 'x | y';
    case 'BXOR':
      return float ? undefined : 'x ^ y';
  }
}

/** op → kind → kernel (null: the op does not apply to the kind). Looked up on every reduction. */
const kernels = new Map<BuiltinOp, Map<Kind, Kernel | null>>();

/**
 * A native element-wise kernel (kmod's reduceInto): the same results as the JS kernels, at memory
 * speed (measured here, 1 MiB float64 SUM out of place: JS 376 us, native 97 us; BigInt64 kinds
 * gain far more). Returns false for what it leaves to JS.
 */
export type NativeReduce = (op: number, out: AnyTypedArray, a: AnyTypedArray, off: number, b: AnyTypedArray, bOff: number, n: number) => boolean;
const NATIVE_OPS: Partial<Record<BuiltinOp, number>> = { SUM: 0, PROD: 1, MIN: 2, MAX: 3, BAND: 4, BOR: 5, BXOR: 6 };
/** Below this many elements the call into native code costs more than the JS loop saves. */
export const NATIVE_REDUCE_MIN = 1024;
let nativeReduce: NativeReduce | undefined;

/** Routes large reductions to a native kernel (undefined: JS only). The runtime sets it when the addon loads. */
export function useNativeKernels(f: NativeReduce | undefined): void {
  nativeReduce = f;
  kernels.clear();
  kernelGeneration++;
}
/** Counts useNativeKernels calls: a kernel remembered from an earlier generation is stale. */
let kernelGeneration = 0;

/** The kernel for (op, kind), or undefined when the op does not apply to the kind. */
export function kernel(op: BuiltinOp, kind: Kind): Kernel | undefined {
  let byKind = kernels.get(op);
  if (byKind === undefined) kernels.set(op, (byKind = new Map()));
  let k = byKind.get(kind);
  if (k === undefined) {
    const expr = kernelExpr(op, kind);
    if (expr === undefined) {
      byKind.set(kind, null);
      return undefined;
    }
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    k = new Function(
      'out',
      'a',
      'off',
      'b',
      'bOff',
      'n',
      // The comment makes every (op, kind) source unique: V8 caches `new Function` code by source
      // text, and kernels sharing one source share type feedback and go megamorphic (measured
      // on Node 20: Float64 SUM of 1M elements 2.7 ms alone, 85 ms after five other kinds).
      `'use strict'; /* ${op} ${kind} */\nfor (let i = 0; i < n; i++) { const x = a[off + i]; const y = b[bOff + i]; out[off + i] = ${expr}; }`,
    ) as Kernel;
    const code = NATIVE_OPS[op];
    const native = nativeReduce;
    if (native !== undefined && code !== undefined && kind !== 'Uint8ClampedArray') {
      const js = k;
      k = (out, a, off, b, bOff, n) => {
        if (n < NATIVE_REDUCE_MIN || !native(code, out, a, off, b, bOff, n)) js(out, a, off, b, bOff, n);
      };
    }
    byKind.set(kind, k);
  }
  return k ?? undefined;
}

// ------------------------------------------------------------------------------------------------
// Scalars.

function isIntegralNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x);
}

function bitwiseNumber(op: 'BAND' | 'BOR' | 'BXOR', a: number, b: number): number {
  if ((a | 0) === a && (b | 0) === b) {
    return op === 'BAND' ? a & b : op === 'BOR' ? a | b : a ^ b;
  }
  const x = BigInt(a);
  const y = BigInt(b);
  return Number(op === 'BAND' ? x & y : op === 'BOR' ? x | y : x ^ y);
}

// ------------------------------------------------------------------------------------------------

/** A resolved operator: how to prepare a contribution and how to combine two. */
export interface Reducer {
  /** The built-in op, or null for a custom function. */
  readonly builtin: BuiltinOp | null;
  /** A readable name for messages ('Op.SUM' or 'a custom function'). */
  readonly name: string;
  /**
   * Validates a contribution (throws UnsupportedError at once if the op cannot handle it) and
   * returns a private copy in the op's domain that the combine step may consume.
   */
  prepare(x: unknown): unknown;
  /** Combines `a` (lower ranks) with `b` (higher ranks); may reuse `a`'s storage, not `b`'s. */
  combine(a: unknown, b: unknown): unknown;
  /**
   * Whether `x` is a typed array the op reduces element-wise as it is (no normalization), so an
   * algorithm may read the caller's array instead of a prepared copy (never writing to it).
   */
  readsAsIs(x: unknown): x is AnyTypedArray;
  /** The element-wise kernel for `x` when the op reads it as it is (readsAsIs), else undefined. */
  kernelOf(x: unknown): Kernel | undefined;
}

/** Throws InvalidArgTypeError unless `op` is an Op constant or a function. */
export function checkOp(op: unknown, rank: number): OpLike {
  if (typeof op === 'function') return op as OpLike;
  if (op === lastBuiltin) return op as BuiltinOp;
  if (typeof op === 'string' && BUILTINS.has(op)) return (lastBuiltin = op as BuiltinOp);
  throw new InvalidArgTypeError(
    `rank ${rank}: op must be one of Op.${[...BUILTINS].join(', Op.')} or a function (a, b) => c, got ${
      typeof op === 'string' ? `'${op}'` : typeName(op)
    }`,
  );
}

export function reducer(op: OpLike, rank: number, clone: (v: unknown) => unknown): Reducer {
  if (typeof op === 'function') {
    const f = op as (a: unknown, b: unknown) => unknown;
    return {
      builtin: null,
      name: 'a custom function',
      // The user's function may mutate its arguments: hand it a copy of the caller's input.
      prepare: (x) => clone(x),
      combine: (a, b) => f(a, b),
      readsAsIs: (_x): _x is AnyTypedArray => false,
      kernelOf: () => undefined,
    };
  }
  // A built-in reducer depends on nothing else: made once per (op, rank), not per call.
  if (op === last.op && rank === last.rank) return last.reducer!;
  const byOp = (builtinReducers[rank] ??= new Map());
  let r = byOp.get(op);
  if (r === undefined) byOp.set(op, (r = builtinReducer(op, rank)));
  last.op = op;
  last.rank = rank;
  last.reducer = r;
  return r;
}

/**
 * The last op checkOp() found built in, and the last reducer() asked for: a loop of like calls
 * looks nothing up (a Set and a Map lookup a call, ~1 % of an 8 B allreduce: perf, stop 31).
 */
let lastBuiltin: BuiltinOp | undefined;
const last: { op: BuiltinOp | undefined; rank: number; reducer: Reducer | undefined } = { op: undefined, rank: -1, reducer: undefined };

/** By rank (only in messages), then op. */
const builtinReducers: Array<Map<BuiltinOp, Reducer>> = [];

function builtinReducer(op: BuiltinOp, rank: number): Reducer {
  const name = `Op.${op}`;
  const unsupported = (x: unknown, why = ''): UnsupportedError =>
    new UnsupportedError(
      `rank ${rank}: ${name} cannot reduce a value of type ${typeName(x)}${why}; ` +
        `numbers, booleans, bigints and typed arrays reduce natively, other values need a function (a, b) => c as op`,
      { rank },
    );
  const bitwise = op === 'BAND' || op === 'BOR' || op === 'BXOR';
  const logical = op === 'LAND' || op === 'LOR';

  const prepare = (x: unknown): unknown => {
    switch (typeof x) {
      case 'number':
        if (logical) return Boolean(x);
        if (bitwise && !Number.isInteger(x)) {
          throw unsupported(x, ' (BAND/BOR/BXOR need integers)');
        }
        return x;
      case 'bigint':
        return logical ? Boolean(x) : x;
      case 'boolean':
        if (op === 'SUM' || op === 'PROD') return x ? 1 : 0;
        return x;
      case 'object': {
        const kind = typedKind(x);
        if (kind === undefined) throw unsupported(x);
        const k = kernel(op, kind);
        if (k === undefined) throw unsupported(x, ' (BAND/BOR/BXOR need an integer element kind)');
        const t = x as AnyTypedArray;
        const out = copyTyped(t);
        if (logical) {
          const big = BIG_KINDS.has(kind);
          const o = out as unknown as { [i: number]: unknown; length: number };
          for (let i = 0; i < o.length; i++) o[i] = o[i] ? (big ? 1n : 1) : big ? 0n : 0;
        }
        return out;
      }
      default:
        throw unsupported(x);
    }
  };

  const mismatch = (a: unknown, b: unknown): CollectiveMismatchError =>
    new CollectiveMismatchError(
      `rank ${rank}: ${name} got contributions that disagree: ${describe(a)} and ${describe(b)}; ` +
        `every rank must pass the same kind of value (typed arrays of the same kind and length)`,
      { rank },
    );

  const combine = (a: unknown, b: unknown): unknown => {
    const ta = typeof a;
    if (ta !== typeof b) throw mismatch(a, b);
    switch (ta) {
      case 'number': {
        const x = a as number;
        const y = b as number;
        switch (op) {
          case 'SUM':
            return x + y;
          case 'PROD':
            return x * y;
          case 'MIN':
            return Math.min(x, y);
          case 'MAX':
            return Math.max(x, y);
          case 'BAND':
          case 'BOR':
          case 'BXOR':
            if (!isIntegralNumber(y)) throw unsupported(y, ' (BAND/BOR/BXOR need integers)');
            return bitwiseNumber(op, x, y);
          default:
            throw mismatch(a, b); // LAND/LOR contributions are prepared into booleans
        }
      }
      case 'bigint': {
        const x = a as bigint;
        const y = b as bigint;
        switch (op) {
          case 'SUM':
            return x + y;
          case 'PROD':
            return x * y;
          case 'MIN':
            return y < x ? y : x;
          case 'MAX':
            return y > x ? y : x;
          case 'BAND':
            return x & y;
          case 'BOR':
            return x | y;
          case 'BXOR':
            return x ^ y;
          default:
            throw mismatch(a, b);
        }
      }
      case 'boolean': {
        const x = a as boolean;
        const y = b as boolean;
        switch (op) {
          case 'MIN':
          case 'LAND':
          case 'BAND':
            return x && y;
          case 'MAX':
          case 'LOR':
          case 'BOR':
            return x || y;
          case 'BXOR':
            return x !== y;
          default:
            throw mismatch(a, b);
        }
      }
      case 'object': {
        const ka = typedKind(a);
        const kb = typedKind(b);
        if (ka === undefined || ka !== kb) throw mismatch(a, b);
        const x = a as AnyTypedArray;
        const y = b as AnyTypedArray;
        if (x.length !== y.length) throw mismatch(a, b);
        const k = kernel(op, ka);
        if (k === undefined) throw unsupported(a);
        k(x, x, 0, y, 0, x.length);
        return x;
      }
      default:
        throw mismatch(a, b);
    }
  };

  // A loop reduces one kind over and over: its kernel is remembered by prototype (and by which
  // kernels are in use), sparing the kind and kernel lookups of every call.
  let seenProto: unknown = null;
  let seenGeneration = -1;
  let seenKernel: Kernel | undefined;
  const kernelOf = (x: unknown): Kernel | undefined => {
    if (!ArrayBuffer.isView(x)) return undefined;
    const proto: unknown = Object.getPrototypeOf(x);
    if (proto === seenProto && seenGeneration === kernelGeneration) return seenKernel;
    const kind = typedKind(x);
    seenKernel = kind !== undefined && !logical ? kernel(op, kind) : undefined;
    seenProto = proto;
    seenGeneration = kernelGeneration;
    return seenKernel;
  };
  const readsAsIs = (x: unknown): x is AnyTypedArray => kernelOf(x) !== undefined;

  return { builtin: op, name, prepare, combine, readsAsIs, kernelOf };
}

/** 'Float64Array(1024)', 'number', ... for mismatch messages. */
export function describe(x: unknown): string {
  const k = typedKind(x);
  if (k !== undefined) return `${Buffer.isBuffer(x) ? 'Buffer' : k}(${(x as AnyTypedArray).length})`;
  return typeName(x);
}
