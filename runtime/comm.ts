// The communicator: MPI point-to-point semantics over the engine's transports and matching.
// Operations post when called (so order is the order of calls) and settle later.

import type { TransportName } from '../transport/transport.js';
import { decode, encode } from './codec.js';
import { ANY_SOURCE, ANY_TAG } from './constants.js';
import type { Engine } from './engine.js';
import { AbortError, InvalidArgTypeError, StateError, TruncateError } from './errors.js';
import { ANY, type Envelope, type Request } from './match.js';
import { checkOptions, checkRank, checkSource, checkTag, type RecvOptions } from './validate.js';

export interface Status {
  source: number;
  tag: number;
  byteLength: number;
}

export interface Message<T = unknown> {
  data: T;
  source: number;
  tag: number;
}

interface PendingRequest extends Request {
  fail(err: Error): void;
}

export class Comm {
  readonly rank: number;
  readonly size: number;
  /** World rank of each member, by communicator rank. */
  protected readonly group: readonly number[];
  private readonly toLocal: Map<number, number> | undefined;

  constructor(
    protected readonly engine: Engine,
    /** Point-to-point context; collectives use ctx + 1. */
    protected readonly ctx: number,
    group: readonly number[],
  ) {
    this.group = group;
    this.size = group.length;
    const me = group.indexOf(engine.rank);
    if (me < 0) throw new StateError(`world rank ${engine.rank} is not a member of this communicator`);
    this.rank = me;
    // The world communicator maps ranks to themselves; others translate at the edges.
    const identity = group.every((w, i) => w === i) && group.length === engine.size;
    this.toLocal = identity ? undefined : new Map(group.map((w, i) => [w, i]));
  }

  protected world(r: number): number {
    return this.group[r]!;
  }

  protected local(w: number): number {
    return this.toLocal === undefined ? w : this.toLocal.get(w)!;
  }

  // ---- sending -------------------------------------------------------------------------

  send(data: unknown, dest: number, tag = 0): Promise<void> {
    try {
      checkRank('dest', dest, this.size, this.rank);
      checkTag(tag, this.rank, false);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.sendOn(this.ctx, data, dest, tag);
  }

  protected sendOn(ctx: number, data: unknown, dest: number, tag: number): Promise<void> {
    let enc;
    try {
      enc = encode(data);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.engine.send(ctx, this.world(dest), tag, enc.codec, enc.bytes);
  }

  // ---- receiving -----------------------------------------------------------------------

  /** Posts a receive on a context; resolves with the raw envelope (source still a world rank). */
  protected post(ctx: number, source: number, tag: number, opts: RecvOptions, probe = false): Promise<Envelope> {
    const engine = this.engine;
    if (engine.failed) return Promise.reject(engine.failed);
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    const matcher = engine.matcher(ctx);
    return new Promise<Envelope>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      const finish = () => {
        engine.release();
        if (onAbort) signal!.removeEventListener('abort', onAbort);
      };
      const req: PendingRequest = {
        source: source === ANY_SOURCE ? ANY : this.world(source),
        tag: tag === ANY_TAG ? ANY : tag,
        seq: 0,
        done: false,
        complete: (env) => {
          engine.completions++;
          finish();
          resolve(env);
        },
        fail: (err) => {
          finish();
          reject(err);
        },
      };
      engine.hold();
      if (signal) {
        onAbort = () => {
          if (matcher.cancel(req)) {
            finish();
            reject(new AbortError(undefined, { cause: signal.reason }));
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      req.seq = postSeq++;
      if (probe) matcher.probe(req);
      else matcher.post(req);
      if (!req.done) engine.progress();
    });
  }

  protected async recvOn(ctx: number, source: number, tag: number, opts: RecvOptions = {}): Promise<unknown> {
    const env = await this.post(ctx, source, tag, opts);
    return decode(env.codec, env.payload, env.source);
  }

  recv<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<T> {
    return this.recvMessage<T>(source, tag, opts).then((m) => m.data);
  }

  async recvMessage<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<Message<T>> {
    const o = this.checkRecv(source, tag, opts);
    const env = await this.post(this.ctx, source, tag, o);
    return { data: decode(env.codec, env.payload, env.source) as T, source: this.local(env.source), tag: env.tag };
  }

  /**
   * Receives into a caller's buffer: the message's bytes (for non-raw values, their encoded
   * form) are copied in. A message larger than the buffer is consumed and rejected with
   * ERR_IVCOM_TRUNCATE.
   */
  async recvInto(buffer: ArrayBufferView, source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<Status> {
    if (!ArrayBuffer.isView(buffer)) {
      throw new InvalidArgTypeError(`rank ${this.rank}: recvInto needs a typed array, Buffer or DataView to fill`);
    }
    const o = this.checkRecv(source, tag, opts);
    const env = await this.post(this.ctx, source, tag, o);
    const n = env.payload.byteLength;
    const from = this.local(env.source);
    if (n > buffer.byteLength) {
      throw new TruncateError(
        `rank ${this.rank}: message from rank ${from} (tag ${env.tag}) is ${n} bytes but the buffer holds ${buffer.byteLength}; the message was consumed. Post a larger buffer, or probe() first to learn the size.`,
        { rank: this.engine.rank, peer: env.source },
      );
    }
    new Uint8Array(buffer.buffer, buffer.byteOffset, n).set(env.payload);
    return { source: from, tag: env.tag, byteLength: n };
  }

  async sendrecv<T = unknown>(
    data: unknown,
    dest: number,
    source: number = ANY_SOURCE,
    sendTag = 0,
    recvTag: number = ANY_TAG,
    opts?: RecvOptions,
  ): Promise<T> {
    // Post the receive first so that two ranks exchanging with each other never wait on each
    // other's send.
    const r = this.recv<T>(source, recvTag, opts);
    const s = this.send(data, dest, sendTag);
    const [v] = await Promise.all([r, s]);
    return v;
  }

  async probe(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: RecvOptions): Promise<Status> {
    const o = this.checkRecv(source, tag, opts);
    const env = await this.post(this.ctx, source, tag, o, true);
    return this.status(env);
  }

  iprobe(source: number = ANY_SOURCE, tag: number = ANY_TAG): Status | null {
    this.checkRecv(source, tag, undefined);
    const m = this.engine.matcher(this.ctx);
    let env = m.peek(source === ANY_SOURCE ? ANY : this.world(source), tag);
    if (env === undefined && this.engine.poll() > 0) {
      env = m.peek(source === ANY_SOURCE ? ANY : this.world(source), tag);
    }
    return env === undefined ? null : this.status(env);
  }

  private status(env: Envelope): Status {
    return { source: this.local(env.source), tag: env.tag, byteLength: env.payload.byteLength };
  }

  private checkRecv(source: unknown, tag: unknown, opts: unknown): RecvOptions {
    checkSource(source, this.size, this.rank);
    checkTag(tag, this.rank, true);
    return checkOptions(opts, this.rank);
  }

  // ---- the rest -------------------------------------------------------------------------

  /** Which transport carries messages to `peer`: 'self', 'ivcom' or 'tcp'. */
  transportTo(peer: number): TransportName {
    checkRank('peer', peer, this.size, this.rank);
    return this.engine.transportName(this.world(peer));
  }

  /** Ends the whole job now with `code` (ivrun exits with it). */
  abort(code = 1): never {
    return this.engine.abort(code, `comm.abort(${code})`);
  }
}

let postSeq = 0;
