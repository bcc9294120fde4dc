// A posted receive (or blocking probe): what the matcher holds until a message fits, and what it
// turns the message into. One object per receive, its behaviour on the prototype: a receive is
// the hot path of every exchange, and a closure per callback (complete, fail, finish, map) used
// to cost ~0.5 KB of garbage per message, i.e. a young-generation GC, with its helper-thread
// wake-ups, every few thousand messages.

import { decode } from './codec.js';
import { ANY_TAG, PROC_NULL } from './constants.js';
import { Codec } from './codec-ids.js';
import { announcedBytes } from './rendezvous.js';
import type { Engine } from './engine.js';
import { AbortError, TruncateError } from './errors.js';
import type { Envelope, Matcher, Request } from './match.js';
import type { Posted } from './collectives/port.js';
import type { IncomingMessage } from '../transport/transport.js';
import { Outcome } from './outcome.js';

export interface Status {
  source: number;
  tag: number;
  byteLength: number;
}

export interface Message<T = unknown> {
  data: T;
  source: number;
  tag: number;
  /** The payload's size, as Status.byteLength. */
  byteLength: number;
}

/** What a receive from PROC_NULL completes with at once, per kind of receive. */
export const NULL_STATUS: Status = Object.freeze({ source: PROC_NULL, tag: ANY_TAG, byteLength: 0 });
const NULL_MESSAGE: Message<undefined> = Object.freeze({ data: undefined, source: PROC_NULL, tag: ANY_TAG, byteLength: 0 });

/** What a completed receive resolves with. */
export const enum Yield {
  /** The decoded value (recv). */
  Value,
  /** { data, source, tag } (recvMessage). */
  Message,
  /** The bytes copied into `into`, or ERR_IVCOM_TRUNCATE; resolves with a Status (recvInto). */
  Into,
  /** A Status, the message left queued (probe). */
  Status,
  /** A collective piece: copied into `into` when it fits; { byteLength, codec }. */
  Piece,
  /** The message itself, taken out of matching and not yet received (mprobe). */
  Claim,
}

/** The communicator a receive belongs to, as far as the result needs it. */
export interface ReceiveOwner {
  /** This process's rank in the communicator. */
  readonly rank: number;
  readonly engine: Engine;
  /** World rank to communicator rank. */
  local(world: number): number;
}

// The executor of every receive promise: it closes over nothing, so creating the promise
// allocates no closure; the functions it was handed are picked up right after.
let handedResolve: (v: unknown) => void;
let handedReject: (e: Error) => void;
function capture(resolve: (v: unknown) => void, reject: (e: Error) => void): void {
  handedResolve = resolve;
  handedReject = reject;
}

export class Receive implements Request {
  seq = 0;
  done = false;
  claimed = false;
  outcome = Outcome.Pending;
  /** What the promise resolved with, once `outcome` is Value. */
  value: unknown = undefined;
  readonly promise: Promise<unknown>;
  private readonly resolve: (v: unknown) => void;
  private readonly reject: (e: Error) => void;
  private onAbort: (() => void) | undefined = undefined;

  constructor(
    private readonly owner: ReceiveOwner,
    private readonly yields: Yield,
    /** World rank pattern or ANY. */
    public source: number,
    public tag: number,
    readonly into: Uint8Array | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.promise = new Promise(capture);
    this.resolve = handedResolve;
    this.reject = handedReject;
  }

  /** Withdraws the receive when `signal` aborts (if it has not matched by then). */
  listen(matcher: Matcher): void {
    const signal = this.signal!;
    this.onAbort = () => {
      if (matcher.cancel(this)) {
        this.finish();
        this.outcome = Outcome.Failed;
        this.reject(new AbortError(undefined, { cause: signal.reason }));
      }
    };
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  complete(env: Envelope): void {
    if (env.codec === Codec.Rts && this.yields !== Yield.Status && this.yields !== Yield.Claim) {
      // Matched a large message's announcement: its bytes come next, straight into place. A
      // receive matched when posted is not spun for (it looked complete), so spin for the pull.
      this.owner.engine.rendezvous.pull(this, env);
      this.owner.engine.progress.kick();
      return;
    }
    this.owner.engine.progress.completed();
    this.finish();
    let v: unknown;
    try {
      // Decoding here, not in a .then(), saves a promise per message.
      v = this.result(env);
    } catch (err) {
      this.outcome = Outcome.Failed;
      this.reject(err as Error);
      return;
    }
    this.outcome = Outcome.Value;
    this.value = v;
    this.resolve(v);
  }

  fail(err: Error): void {
    this.finish();
    this.outcome = Outcome.Failed;
    this.reject(err);
  }

  private finish(): void {
    this.owner.engine.progress.release();
    if (this.onAbort !== undefined) this.signal!.removeEventListener('abort', this.onAbort);
  }

  private result(env: Envelope): unknown {
    const owner = this.owner;
    switch (this.yields) {
      case Yield.Value:
        owner.engine.staging.forget(env.payload);
        return decode(env.codec, env.payload, env.source, owner.engine.shapes);
      case Yield.Message:
        owner.engine.staging.forget(env.payload);
        return { data: decode(env.codec, env.payload, env.source, owner.engine.shapes), source: owner.local(env.source), tag: env.tag, byteLength: env.payload.byteLength };
      case Yield.Status:
        return statusOf(owner, env);
      case Yield.Claim:
        return env;
      case Yield.Into: {
        const view = this.into!;
        const n = env.payload.byteLength;
        const from = owner.local(env.source);
        if (n > view.byteLength) {
          owner.engine.staging.give(env.payload);
          throw new TruncateError(
            `rank ${owner.rank}: message from rank ${from} (tag ${env.tag}) is ${n} bytes but the buffer holds ${view.byteLength}; the message was consumed. Post a larger buffer, or probe() first to learn the size.`,
            { rank: owner.engine.rank, peer: env.source },
          );
        }
        if (!placedIn(env.payload, view)) view.set(env.payload);
        owner.engine.staging.give(env.payload);
        return { source: from, tag: env.tag, byteLength: n };
      }
      case Yield.Piece: {
        const view = this.into!;
        const n = env.payload.byteLength;
        // A piece that does not fit is a mismatch the caller reports; copy nothing then.
        if (n <= view.byteLength && !placedIn(env.payload, view)) {
          view.set(env.payload);
          owner.engine.staging.give(env.payload);
        }
        return { byteLength: n, codec: env.codec };
      }
    }
  }
}

/**
 * A collective step's message taken straight from a ring (Engine.takeFrom), as the step's
 * Posted: complete already, decoded here as a receive would have decoded it.
 */
export class Taken implements Posted {
  readonly outcome: Outcome;
  readonly value: unknown = undefined;
  private readonly failure: Error | undefined = undefined;
  private settled: Promise<unknown> | undefined = undefined;

  constructor(m: IncomingMessage, engine: Engine) {
    try {
      this.value = decode(m.codec, m.payload, m.source, engine.shapes);
      this.outcome = Outcome.Value;
    } catch (err) {
      this.failure = err as Error;
      this.outcome = Outcome.Failed;
    }
  }

  /** Made only when asked for: a step that goes on at once never awaits it. */
  get promise(): Promise<unknown> {
    return (this.settled ??= this.outcome === Outcome.Value ? Promise.resolve(this.value) : Promise.reject(this.failure));
  }
}

/** What probe and iprobe report about a message. */
export function statusOf(owner: ReceiveOwner, env: Envelope): Status {
  const n = env.codec === Codec.Rts ? announcedBytes(env.payload) : env.payload.byteLength;
  return { source: owner.local(env.source), tag: env.tag, byteLength: n };
}

/**
 * Whether a transport already assembled the payload right in `view` (Upcalls.allocate). Only
 * large messages are placed; small payloads are V8 on-heap arrays whose `.buffer` would cost an
 * allocation to read, so they are never looked at that way.
 */
function placedIn(payload: Uint8Array, view: Uint8Array): boolean {
  return payload.byteLength > 64 && payload.buffer === view.buffer && payload.byteOffset === view.byteOffset;
}

/** What a receive from PROC_NULL resolves with. */
export function nullResult(yields: Yield): unknown {
  switch (yields) {
    case Yield.Message:
      return { ...NULL_MESSAGE };
    case Yield.Into:
    case Yield.Status:
      return { ...NULL_STATUS };
    default:
      return undefined;
  }
}
