// Argument checks that throw at once, with Node's codes, naming the rank and what to pass.

import { InvalidArgTypeError, OutOfRangeError } from './errors.js';
import { ANY_SOURCE, ANY_TAG, PROC_NULL, TAG_UB } from './constants.js';

function intCheck(what: string, v: unknown, rank: number): number {
  if (typeof v !== 'number') {
    throw new InvalidArgTypeError(`rank ${rank}: ${what} must be an integer, got ${v === null ? 'null' : typeof v}`);
  }
  if (!Number.isInteger(v)) throw new OutOfRangeError(`rank ${rank}: ${what} must be an integer, got ${v}`);
  return v;
}

export function checkRank(what: string, v: unknown, size: number, rank: number): number {
  const r = intCheck(what, v, rank);
  if (r < 0 || r >= size) {
    throw new OutOfRangeError(`rank ${rank}: ${what} ${r} is out of range; this communicator has ranks 0..${size - 1}`);
  }
  return r;
}

export function checkSource(v: unknown, size: number, rank: number): number {
  if (v === ANY_SOURCE || v === PROC_NULL) return v;
  return checkRank('source', v, size, rank);
}

/** A destination: a rank of the communicator, or PROC_NULL. */
export function checkDest(v: unknown, size: number, rank: number): number {
  if (v === PROC_NULL) return v;
  return checkRank('dest', v, size, rank);
}

export function checkTag(v: unknown, rank: number, allowAny: boolean): number {
  const t = intCheck('tag', v, rank);
  if (allowAny && t === ANY_TAG) return t;
  if (t < 0 || t > TAG_UB) {
    throw new OutOfRangeError(
      `rank ${rank}: tag ${t} is out of range; use 0..${TAG_UB}${allowAny ? ' or ANY_TAG' : ''}`,
    );
  }
  return t;
}

export interface RecvOptions {
  signal?: AbortSignal;
}

/** The options of a receive given none (shared: nothing writes to it). */
export const NO_OPTIONS: RecvOptions = Object.freeze({});

export function checkOptions(v: unknown, rank: number): RecvOptions {
  if (v === undefined) return NO_OPTIONS;
  if (typeof v !== 'object' || v === null) {
    throw new InvalidArgTypeError(`rank ${rank}: receive options must be an object like { signal }, got ${typeof v}`);
  }
  const signal = (v as RecvOptions).signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgTypeError(`rank ${rank}: options.signal must be an AbortSignal`);
  }
  return { signal };
}
