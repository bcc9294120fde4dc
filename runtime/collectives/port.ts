// The small point-to-point port collectives are written against (not Comm), so that Comm can
// expose collectives without an import loop. Comm hands each collective a port bound to the
// communicator's collective context: its traffic never matches user point-to-point messages.

import type { Outcome } from '../outcome.js';

/** What the next collective call on a port is (signature.ts puts it in the call's tags). */
export interface Signature {
  kind: import('./signature.js').Kind;
  /** The root of a rooted collective; undefined (0 in tags) for the others. */
  root: number | undefined;
  /** Set by the call's nextTagBase: its tag base (-1 until then). */
  base: number;
  /**
   * Set by a call that will tell the port its end itself (CollPort.ended), so the communicator
   * need not watch its promise for that.
   */
  reportsEnd: boolean;
}

/** A receive posted by CollPort.recvNow. */
export interface Posted {
  /** Outcome.Value: `value` is the message already; else await `promise`. */
  readonly outcome: Outcome;
  readonly value: unknown;
  readonly promise: Promise<unknown>;
}

export interface CollPort {
  /** Set by the communicator just before a call; read once by that call's nextTagBase. */
  signature?: Signature;
  /** The slot of the next collective call (signature.ts); kept by nextTagBase, 0 when absent. */
  slot?: number;
  /** Rank in the communicator, 0 .. size-1. */
  readonly rank: number;
  readonly size: number;
  /** World rank of this process (for error messages). */
  readonly worldRank: number;
  /**
   * Sends a value (raw typed arrays/ArrayBuffers/DataView/Buffer as bytes, anything else via
   * msgpackr). Posts at call time; resolves when `data` may be reused.
   */
  send(data: unknown, dest: number, tag: number): Promise<void>;
  /** Receives the next message from `source` with `tag` (both exact, never wildcards). */
  recv(source: number, tag: number): Promise<unknown>;
  /**
   * Optional: recv() for a step that posts nothing else before it waits: the receive may
   * complete within this call (Posted.outcome says so), saving the awaits. Ports without it are
   * served by recv().
   */
  recvNow?(source: number, tag: number): Posted;
  /** Optional: the promise send() returns when the message went out at once (an await to skip). */
  readonly sent?: Promise<void>;
  /** Host index of a communicator rank, for hierarchical algorithms (same number = same host). */
  hostOf(rank: number): number;
  /**
   * Optional: receives the next message from `source` with `tag` into `into` (its raw bytes),
   * resolving to the message's size and codec. Large messages may then land directly in `into`
   * (no fresh pages, no extra copy). Ports without it are served by recv().
   */
  recvInto?(into: ArrayBufferView, source: number, tag: number): Promise<{ byteLength: number; codec: number }>;
  /**
   * Optional, the world communicator of a job on one host: its small collectives meet in the
   * host group's slots (host-slots.ts) instead of passing messages.
   */
  readonly slots?: import('../host-slots.js').HostSlots;
  /** Optional: the call announced as `sig` has ended, `ok`: with a value (else it failed); see Signature.reportsEnd. */
  ended?(sig: Signature, ok: boolean): void;
}
