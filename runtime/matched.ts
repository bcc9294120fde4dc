// A message claimed by mprobe/improbe, out of matching and waiting to be received once.

import { InvalidArgTypeError, StateError } from './errors.js';
import type { Envelope } from './match.js';
import { NULL_STATUS, Receive, nullResult, statusOf, Yield, type ReceiveOwner, type Status } from './receive.js';
import { asBytes } from './typed.js';

/**
 * A message claimed by mprobe/improbe: no other receive can take it. Receive it once, with
 * recv() or recvInto(); from PROC_NULL it is empty (recv gives undefined).
 */
export class MatchedMessage<T = unknown> {
  readonly source: number;
  readonly tag: number;
  readonly byteLength: number;
  private taken = false;

  constructor(
    private readonly owner: ReceiveOwner,
    private readonly env: Envelope | undefined,
  ) {
    const st = env === undefined ? NULL_STATUS : statusOf(owner, env);
    this.source = st.source;
    this.tag = st.tag;
    this.byteLength = st.byteLength;
  }

  recv(): Promise<T> {
    return this.take(Yield.Value, undefined) as Promise<T>;
  }

  recvInto(buffer: ArrayBufferView): Promise<Status> {
    if (!ArrayBuffer.isView(buffer)) {
      return Promise.reject(new InvalidArgTypeError(`rank ${this.owner.rank}: recvInto needs a typed array, Buffer or DataView to fill`));
    }
    return this.take(Yield.Into, asBytes(buffer)) as Promise<Status>;
  }

  private take(yields: Yield, into: Uint8Array | undefined): Promise<unknown> {
    if (this.taken) {
      return Promise.reject(new StateError(`rank ${this.owner.rank}: this matched message was already received; mprobe again for the next one`, { rank: this.owner.engine.rank }));
    }
    this.taken = true;
    const env = this.env;
    if (env === undefined) return Promise.resolve(nullResult(yields));
    // A receive that the claimed message completes at once (or, for a large one, once its
    // bytes are pulled into place, as for any receive).
    const engine = this.owner.engine;
    const req = new Receive(this.owner, yields, env.source, env.tag, into, undefined);
    engine.progress.hold();
    req.done = true;
    req.complete(env);
    engine.progress.kick();
    return req.promise;
  }
}
