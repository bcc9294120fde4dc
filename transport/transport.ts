// The contract between the runtime and every transport (self, ivcom, tcp).
// Modelled on UCX's split: a Transport is the interface (receive side, progress), an Endpoint
// sends to one peer, and what a transport can do is described by data (Capabilities), not by
// `instanceof` checks in the runtime.

export type TransportName = 'self' | 'ivcom' | 'tcp';

export interface Capabilities {
  readonly name: TransportName;
  /** Messages up to this many payload bytes are copied at once; send completes without waiting. */
  readonly eagerLimit: number;
  /** Largest payload carried in one frame; larger messages are fragmented below the runtime. */
  readonly maxFrame: number;
  /** 'memory' transports can be polled cheaply (spin); 'network' ones only wake the event loop. */
  readonly latencyClass: 'memory' | 'network';
}

/** Matching fields of a message. `source` is always a world rank. */
export interface MessageHeader {
  ctx: number;
  source: number;
  tag: number;
  /** Codec kind (runtime/codec.ts); carried opaquely by transports. */
  codec: number;
}

/**
 * A message on its way down. `parts` are views of the payload in order; they may alias the
 * caller's memory until the send completes, so a transport must copy (or finish writing) them
 * before it settles the send.
 */
export interface OutgoingMessage extends MessageHeader {
  parts: readonly Uint8Array[];
  byteLength: number;
}

/** A complete message on its way up. The payload belongs to the receiver from now on. */
export interface IncomingMessage extends MessageHeader {
  payload: Uint8Array;
  /**
   * Arrival order, stamped by the receiver's matching (delivered as 0). A field of the message
   * rather than of a wrapper so that a delivered message is matched without a second object.
   */
  seq: number;
}

/**
 * Memory transports: words in memory the two ranks of a pair share, set aside for a protocol
 * above the transport (the runtime's shared single copy, runtime/shared-copy.ts). All zero at
 * first. The peer may write anything there: every value read must be checked before use.
 * Each array is two cache lines (SHARED_WORDS words; word 0 and word SHARED_WORDS / 2 are on
 * different lines).
 */
export interface SharedWords {
  /** For copies of the peer's data into this rank. */
  readonly inbound: Int32Array;
  /** For copies of this rank's data into the peer. */
  readonly outbound: Int32Array;
}
export const SHARED_WORDS = 32;

export interface Endpoint {
  readonly peer: number;
  readonly caps: Capabilities;
  /** Memory transports, once the pair's memory is mapped: see SharedWords. */
  readonly shared?: SharedWords | undefined;
  /**
   * Posts a message; never blocks the thread. Messages to one peer leave in call order.
   * Returns undefined when the message was handled in full: its payload copied or written, and
   * neither it nor `msg` kept (the caller reuses both). Otherwise a promise that settles when the
   * caller may reuse the payload (backpressure, or a large message still streaming); `msg` then
   * stays the transport's.
   */
  send(msg: OutgoingMessage): Promise<void> | undefined;
}

/** What a receiver is told about a message when its first bytes arrive (already bounds-checked). */
export interface DestinationRequest extends MessageHeader {
  byteLength: number;
}

/** What a transport calls back into. Set once, before any endpoint is opened. */
export interface Upcalls {
  deliver(msg: IncomingMessage): void;
  /**
   * Optional: when a large message starts, the receiver may name the memory to assemble it in
   * (a buffer a receive has already posted), saving a copy and fresh pages. Exactly
   * `byteLength` bytes, or undefined to let the transport allocate. The delivered payload is
   * then that very view. `h` is valid during the call only: a transport may reuse it for the
   * next message (it is asked once per large message, and a fresh object each time was garbage).
   */
  allocate?(h: DestinationRequest): Uint8Array | undefined;
  /**
   * Optional: reusable memory for a large message no receive has claimed (undefined: allocate
   * fresh). The ivcom transport uses it; over TCP it measured slower (runtime/staging.ts).
   */
  stage?(h: DestinationRequest): Uint8Array | undefined;
  /** A channel failed (peer gone, corrupt ring, bad handshake on an established peer). */
  fail(err: Error): void;
  /**
   * Optional: `peer` closed its end in order (it finalized or exited) after everything it sent
   * was delivered; nothing sent to it from now on, or announced to it and not yet taken, will be
   * received. May be reported more than once for one peer.
   */
  peerClosed?(peer: number): void;
}

export interface Transport {
  readonly caps: Capabilities;
  /** The endpoint to a peer, opened lazily on first use and cached. */
  endpoint(peer: number): Endpoint;
  /**
   * Memory transports only: look for received data once, without syscalls, delivering what is
   * there, and write what queued sends the rings now take. Returns how much moved (messages
   * delivered plus send records written; 0: nothing). The runtime calls it while it spins.
   */
  poll?(): number;
  /**
   * Memory transports only: the runtime stopped spinning and returns to the event loop. Arm
   * the doorbell (so the peer rings on its next send), re-check once, deliver what is there.
   */
  idle?(): void;
  /**
   * Memory transports only: give the CPU away for a moment between polls (when ranks outnumber
   * cores, the peer this rank waits for may need this very core). `awaited`: the world rank the
   * caller waits for, when it knows (a transport may keep the CPU while that peer is running).
   * Returns whether it gave the CPU away (false: it kept it, and the caller's poll was quick).
   */
  relax?(awaited?: number): boolean;
  /**
   * Memory transports only: this host's group segment, where small collectives of a job that
   * runs on one host meet (ivcom/group.ts). Asked for on the first call.
   */
  hostGroup?(): Promise<import('./ivcom/group.js').HostGroup>;
  /**
   * Memory transports only: the next message from `peer`, taken from the head of its channel
   * without the deliver upcall, when that head is a whole small message with exactly this ctx
   * and tag (undefined: nothing whole there yet, or another message). For a caller that knows
   * nothing it holds could come before that message. The peer can rewrite the head between the
   * look and the take: the caller checks ctx and tag of what it got, and delivers it otherwise.
   */
  take?(peer: number, ctx: number, tag: number): IncomingMessage | undefined;
  /** Memory transports only: the peers this side holds a channel with. */
  channelPeers?(): number[];
  /** Flush what was accepted, then release every resource. Idempotent. */
  close(): Promise<void>;
}
