// Memory for large messages that arrive before their receive is posted. A transport must put
// such a message somewhere; fresh memory costs a page fault per 4 KiB page (1-3 µs each here, a
// few ms for a 4 MiB message), which made a stream received with one `recvInto` at a time barely
// faster than TCP. When `recvInto` (or a collective's piece) takes the message, its bytes are
// copied into the caller's buffer and the staging buffer comes back here for the next message of
// that size; a `recv` that hands the bytes to the program keeps the buffer (it is the result).
// The pool is bounded, so memory stays bounded by what is in flight plus STAGING_MAX_BYTES.

/**
 * Messages from this size on are staged in pooled memory. Below, the ring's own slab and V8's heap
 * serve them cheaply. Measured, one recvInto at a time, 64 KiB messages: 2.7-5.2 GB/s with the
 * threshold at 256 KiB, 10.0-12.6 GB/s at 32 KiB (alternating runs; 8 B latency unchanged).
 */
export const STAGING_MIN_BYTES = 32 * 1024;
/** Most memory kept for reuse between messages (a window of 16 messages of 4 MiB). */
const STAGING_MAX_BYTES = 64 * 1024 * 1024;

export class StagingPool {
  /**
   * Free buffers by exact size (streams repeat their message sizes), each kept as the view that
   * covers it whole: handing out the same view object again saves one per message.
   */
  private readonly free = new Map<number, Uint8Array[]>();
  private freeBytes = 0;
  /** Buffers lent to a message still queued or being received. */
  private readonly lent = new WeakSet<ArrayBuffer>();

  /** A view of exactly `n` bytes for an unexpected message, or undefined below the threshold. */
  take(n: number): Uint8Array | undefined {
    if (n < STAGING_MIN_BYTES) return undefined;
    let view = this.free.get(n)?.pop();
    if (view !== undefined) this.freeBytes -= n;
    // Not zero-filled: the transport overwrites every byte before the message is delivered.
    else view = new Uint8Array(Buffer.allocUnsafeSlow(n).buffer, 0, n);
    this.lent.add(view.buffer as ArrayBuffer);
    return view;
  }

  /** The message's bytes were copied out: its buffer may serve the next message. */
  give(payload: Uint8Array): void {
    // Small payloads are never staged; and reading `.buffer` of one would move it off V8's heap.
    if (payload.byteLength < STAGING_MIN_BYTES) return;
    const buf = payload.buffer as ArrayBuffer;
    if (!this.lent.has(buf)) return;
    this.lent.delete(buf);
    if (this.freeBytes + buf.byteLength > STAGING_MAX_BYTES) return;
    let list = this.free.get(buf.byteLength);
    if (list === undefined) this.free.set(buf.byteLength, (list = []));
    // The payload is normally the very view take() lent; a narrower one (a verified message's
    // trailer cut off) gets a whole view.
    list.push(payload.byteOffset === 0 && payload.byteLength === buf.byteLength ? payload : new Uint8Array(buf));
    this.freeBytes += buf.byteLength;
  }

  /** The message's bytes became the program's (a recv result): never lend that buffer again. */
  forget(payload: Uint8Array): void {
    if (payload.byteLength >= STAGING_MIN_BYTES) this.lent.delete(payload.buffer as ArrayBuffer);
  }
}
