// One error base class with a stable `code` per subclass (the undici pattern). Messages name the
// rank, the peer and what to do next; callers branch on `code`, never on the message text.
// Transports raise them and the runtime re-exports them (runtime/errors.ts): they live at the
// lowest layer that raises them, so no layer imports the one above it.
//
// `instanceof` goes by a brand, not by the prototype chain: two copies of the package in one
// process (a dependency of a dependency) still recognise each other's errors, and so do the
// errors the native addon throws, which carry the brand and their code (kmod/src/common.cc).

/** The brand every ivcom error carries; the addon sets it on the errors it throws. */
export const IVCOM_ERROR = Symbol.for('ivcom.error');

export class IvcomError extends Error {
  readonly code: string = 'ERR_IVCOM';
  declare readonly [IVCOM_ERROR]: true;

  static override [Symbol.hasInstance](x: unknown): boolean {
    if (typeof x !== 'object' || x === null || (x as { [IVCOM_ERROR]?: unknown })[IVCOM_ERROR] !== true) return false;
    // The base class takes every branded error; a subclass only those with its code.
    const code = (this as unknown as { CODE?: string }).CODE;
    return code === undefined || (x as { code?: unknown }).code === code;
  }
  /** World rank that raised it, when known. */
  rank?: number;
  /** Peer involved, when there is one. */
  peer?: number;

  constructor(message: string, opts: { rank?: number; peer?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    Object.defineProperty(this, IVCOM_ERROR, { value: true });
    if (opts.rank !== undefined) this.rank = opts.rank;
    if (opts.peer !== undefined) this.peer = opts.peer;
  }
}

function kind(code: string) {
  return class extends IvcomError {
    static readonly CODE = code;
    override readonly code = code;
  };
}

/** A message larger than the receive buffer; the message was consumed. */
export class TruncateError extends kind('ERR_IVCOM_TRUNCATE') {}
/** A channel's shared memory held values outside its bounds: the peer is broken or hostile. */
export class CorruptError extends kind('ERR_IVCOM_CORRUPT') {}
/** A connection failed, or a peer went away while messages were still owed. */
export class PeerLostError extends kind('ERR_IVCOM_PEER_LOST') {}
/** A connection could not prove it belongs to this job. */
export class AuthError extends kind('ERR_IVCOM_AUTH') {}
/** The launcher (bootstrap server) could not be reached or broke the protocol. */
export class BootstrapError extends kind('ERR_IVCOM_BOOTSTRAP') {}
/** A transport was forced (--transport) that cannot serve this pair. */
export class TransportUnavailableError extends kind('ERR_IVCOM_TRANSPORT_UNAVAILABLE') {}
/** The communicator or runtime is finalized / not initialized. */
export class StateError extends kind('ERR_IVCOM_STATE') {}
/** A value that an operation cannot handle (e.g. an Op on an unsupported type). */
export class UnsupportedError extends kind('ERR_IVCOM_UNSUPPORTED') {}
/** A value structured clone refuses (a function, a symbol, a WeakMap...): it cannot be sent. */
export class UnserializableError extends kind('ERR_IVCOM_UNSERIALIZABLE') {}
/** A message larger than one array of this Node can hold (wire.ts MAX_MESSAGE_BYTES): split it. */
export class TooLargeError extends kind('ERR_IVCOM_TOO_LARGE') {}
/** Memory for a message's bytes could not be had on the receiving side: receive into a buffer of your own (recvInto), or send less at a time. */
export class NoMemoryError extends kind('ERR_IVCOM_NO_MEMORY') {}
/** Collective participants disagree (different lengths, types or counts). */
export class CollectiveMismatchError extends kind('ERR_IVCOM_COLLECTIVE_MISMATCH') {}
/** A native call failed: carries errno and syscall like Node's system errors. */
export class NativeError extends kind('ERR_IVCOM_NATIVE') {
  errno?: number;
  syscall?: string;
}

// Node's own codes for bad arguments, so `err.code` matches what Node users already check.
export class InvalidArgTypeError extends TypeError {
  readonly code = 'ERR_INVALID_ARG_TYPE';
  constructor(message: string) {
    super(message);
    this.name = 'TypeError';
  }
}

export class OutOfRangeError extends RangeError {
  readonly code = 'ERR_OUT_OF_RANGE';
  constructor(message: string) {
    super(message);
    this.name = 'RangeError';
  }
}

export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'The operation was aborted', opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'AbortError';
  }
}
