// Where a posted receive stands. A caller that waited for the receive synchronously
// (Progress.waitNow, CollPort.recvNow) reads it instead of awaiting the receive's promise.

export const enum Outcome {
  Pending,
  /** Completed: the receive's `value` is what its promise resolved with. */
  Value,
  /** Its promise rejected (await it for the error). */
  Failed,
}
