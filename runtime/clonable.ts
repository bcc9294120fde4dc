// What structured clone refuses, found before msgpackr would lose it quietly (a function sent
// as undefined, a WeakMap as {}): functions, symbols, weak collections and references, promises,
// proxies, anywhere in the value. Everything else msgpackr's structured-clone mode carries.
//
// The same walk bounds nesting: msgpackr packs and unpacks by recursion, one level of the value
// per few stack frames, so a deeper value would overflow the stack (MAX_DEPTH says why 512).
//
// The same walk also tells plain data apart (strings, finite or not numbers, booleans, null, in
// arrays and plain objects, nothing reached twice): such a value means the same encoded without
// structured cloning, which msgpackr packs and unpacks in about 60 % of the time.
//
// A send pays for one walk of the value. The common case (a small acyclic object) walks by plain
// recursion without allocating; a value that is deep, cyclic or heavily shared is walked again
// with a visited set and an explicit stack, so no shape makes it slow or overflows the stack.

import { types } from 'node:util';

/** Deeper than this, or more containers than WIDE, and the walk switches to the visited set. */
const DEEP = 32;
const WIDE = 4096;

/**
 * Most containers (arrays, objects, Maps, Sets) a value may nest. From an empty stack msgpackr
 * overflows Node 20's default stack at ~700 nested Sets, ~1,200 objects, ~1,400 arrays (measured,
 * docs/decisions.md), and sooner when the send is itself called deep in a program; 512 keeps a
 * margin for the caller's frames and is far beyond real data.
 */
export const MAX_DEPTH = 512;

/** Why a value cannot be sent: what structured clone refuses, or nesting beyond MAX_DEPTH. */
export interface Refusal {
  tooDeep: boolean;
  /** Described for an error message. */
  what: string;
}

/**
 * Containers a plain value may hold: every container is compared with those before it (a value
 * reached twice must arrive as one object, which only structured cloning keeps), so few.
 */
const PLAIN_MAX_CONTAINERS = 16;

/** What a walk found. Made by newWalk(), which also sets up the walk's own state. */
export interface Walk {
  containers: number;
  /** Plain data so far (see above). */
  plain: boolean;
}

/** A walk's own state besides what it found. */
interface WalkState extends Walk {
  /** The containers met, while the value may still be plain: the first seenCount (during the walk only). */
  seen: object[] | undefined;
  seenCount: number;
}

/** A walk for examine(), every field set up front (one object shape for all walks). */
export function newWalk(): Walk {
  const w: WalkState = { containers: 0, plain: false, seen: undefined, seenCount: 0 };
  return w;
}

/** Why the value cannot be sent, or undefined when it can. */
export function refusal(value: unknown): Refusal | undefined {
  return examine(value, newWalk());
}

/**
 * refusal(), and whether the value is plain data (`walk.plain`): arrays (without holes) and
 * objects of Object.prototype, holding strings, numbers, booleans and null, no container
 * reached twice, at most PLAIN_MAX_CONTAINERS of them. `found` (from newWalk()) is filled in.
 */
export function examine(value: unknown, found: Walk): Refusal | undefined {
  const walk = found as WalkState;
  walk.containers = 0;
  walk.plain = true;
  walk.seen = undefined;
  let r: string | undefined;
  try {
    r = quick(value, 0, walk);
  } finally {
    // Back to the spare, emptied (nothing of the value kept alive by it), also when a getter
    // the walk reached threw. quick() may have set it (TypeScript still sees the undefined above).
    const seen = walk.seen as object[] | undefined;
    if (seen !== undefined) {
      // A loop, not fill(): Node 20's Array.prototype.fill is a call into C++ (~0.1 µs a send).
      for (let i = 0, n = walk.seenCount; i < n; i++) seen[i] = NOTHING;
      spareSeen = seen;
      walk.seen = undefined;
    }
  }
  if (r === TOO_BIG) {
    walk.plain = false;
    return thorough(value);
  }
  if (r !== undefined) walk.plain = false;
  return r === undefined ? undefined : { tooDeep: false, what: r };
}

/** What an unused entry of a walk's list holds. */
const NOTHING: object = Object.freeze({});

function seenList(): object[] {
  return new Array<object>(PLAIN_MAX_CONTAINERS).fill(NOTHING);
}

/**
 * The list a walk notes containers in, kept between sends, full length (a fresh one per send
 * was ~180 B of the ~1.9 KB a small object's round trip allocates). Lent to one walk at a time:
 * a getter the walk reaches may send, and that walk takes a list of its own.
 */
let spareSeen: object[] | undefined = seenList();

/** Notes a container of a value that may still be plain: false once it cannot be. */
function plainContainer(v: object, walk: WalkState): boolean {
  let seen = walk.seen;
  if (seen === undefined) {
    seen = spareSeen ?? seenList();
    spareSeen = undefined;
    walk.seen = seen;
    walk.seenCount = 0;
  }
  const n = walk.seenCount;
  if (n >= PLAIN_MAX_CONTAINERS) return false;
  for (let i = 0; i < n; i++) if (seen[i] === v) return false;
  seen[n] = v;
  walk.seenCount = n + 1;
  return true;
}

const TOO_BIG = '\0';

function refusedLeaf(v: object | symbol | ((...a: unknown[]) => unknown)): string | undefined {
  if (typeof v === 'function') return `a function (${v.name || 'anonymous'})`;
  if (typeof v === 'symbol') return `a symbol (${v.description ?? ''})`;
  if (types.isProxy(v)) return 'a Proxy';
  if (types.isWeakMap(v)) return 'a WeakMap';
  if (types.isWeakSet(v)) return 'a WeakSet';
  if (types.isPromise(v)) return 'a Promise';
  if (v instanceof WeakRef) return 'a WeakRef';
  if (v instanceof FinalizationRegistry) return 'a FinalizationRegistry';
  return undefined;
}

/** Objects whose insides clone as bytes or a few fields: nothing in them can be refused. */
function opaque(v: object): boolean {
  return ArrayBuffer.isView(v) || types.isAnyArrayBuffer(v) || types.isDate(v) || types.isRegExp(v) || types.isBoxedPrimitive(v);
}

/**
 * A string, number or boolean: nothing to look into, plain (checked in place, not by a call per
 * leaf). Each test spelled `typeof x === '...'`: V8 compiles that to a type check, while a
 * `typeof` kept in a variable calls its Typeof builtin.
 */
function plainLeaf(x: unknown): boolean {
  return typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean';
}

function quick(v: unknown, depth: number, budget: WalkState): string | undefined {
  if (typeof v !== 'object') {
    if (plainLeaf(v)) return undefined;
    // undefined, bigint: carried by structured cloning only.
    budget.plain = false;
    return typeof v === 'function' || typeof v === 'symbol' ? refusedLeaf(v) : undefined;
  }
  if (v === null) return undefined;
  if (types.isProxy(v)) return 'a Proxy';
  if (depth >= DEEP || ++budget.containers > WIDE) return TOO_BIG;
  // Arrays and plain objects first, by prototype: the common case pays no further test.
  const proto = Object.getPrototypeOf(v);
  if (budget.plain && ((proto !== Array.prototype && proto !== Object.prototype) || !plainContainer(v, budget))) budget.plain = false;
  if (proto === Array.prototype) {
    const a = v as unknown[];
    for (let i = 0; i < a.length; i++) {
      const x = a[i];
      if (plainLeaf(x)) continue;
      // A hole reads as undefined, which is not plain either.
      const r = quick(x, depth + 1, budget);
      if (r !== undefined) return r;
    }
    return undefined;
  }
  if (proto !== Object.prototype && proto !== null) {
    const leaf = refusedLeaf(v);
    if (leaf !== undefined) return leaf;
    if (opaque(v)) return undefined;
    if (types.isMap(v)) {
      for (const [k, x] of v as Map<unknown, unknown>) {
        const r = quick(k, depth + 1, budget) ?? quick(x, depth + 1, budget);
        if (r !== undefined) return r;
      }
      return undefined;
    }
    if (types.isSet(v)) {
      for (const x of v as Set<unknown>) {
        const r = quick(x, depth + 1, budget);
        if (r !== undefined) return r;
      }
      return undefined;
    }
  }
  // Plain objects, errors and class instances: their own enumerable properties are cloned.
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    // msgpackr decodes such a key under another name: keep it on the path it always took.
    if (k === '__proto__') budget.plain = false;
    const x = (v as Record<string, unknown>)[k];
    if (plainLeaf(x)) continue;
    const r = quick(x, depth + 1, budget);
    if (r !== undefined) return r;
  }
  return undefined;
}

/**
 * Pre-order, children in order, each object at the depth of its first visit: the order msgpackr
 * packs in (with structured cloning a second visit is a reference, not nesting), so the depth
 * found is the depth msgpackr would recurse to.
 */
function thorough(root: unknown): Refusal | undefined {
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  const depths: number[] = [1];
  const children: unknown[] = [];
  while (stack.length > 0) {
    const v = stack.pop();
    const depth = depths.pop()!;
    if (v === null || (typeof v !== 'object' && typeof v !== 'function' && typeof v !== 'symbol')) continue;
    const leaf = refusedLeaf(v as object);
    if (leaf !== undefined) return { tooDeep: false, what: leaf };
    const o = v as object;
    if (seen.has(o) || opaque(o)) continue;
    if (depth > MAX_DEPTH) return { tooDeep: true, what: `a value nested more than ${MAX_DEPTH} levels deep` };
    seen.add(o);
    children.length = 0;
    if (Array.isArray(o)) for (let i = 0; i < o.length; i++) children.push(o[i]);
    else if (types.isMap(o)) for (const [k, x] of o as Map<unknown, unknown>) children.push(k, x);
    else if (types.isSet(o)) for (const x of o as Set<unknown>) children.push(x);
    else for (const k in o) if (Object.prototype.hasOwnProperty.call(o, k)) children.push((o as Record<string, unknown>)[k]);
    for (let i = children.length - 1; i >= 0; i--) {
      stack.push(children[i]);
      depths.push(depth + 1);
    }
  }
  return undefined;
}
