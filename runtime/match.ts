// The matching engine: posted receives and unexpected messages for one communicator context,
// with MPI semantics (non-overtaking order, ANY_SOURCE / ANY_TAG). Both sides are kept in
// per-(source, tag) FIFO queues stamped with a sequence number, so a match looks at a handful of
// queue heads and takes the oldest, instead of scanning everything that is queued.

export const ANY = -1;
/** Sources whose emptied tables stay (a ping-pong would otherwise make and drop one per message). */
const KEEP_SOURCES = 8;

export interface Envelope {
  /** Sender's world rank. */
  source: number;
  tag: number;
  codec: number;
  payload: Uint8Array;
  seq: number;
}

export interface Request {
  /** World rank pattern or ANY. */
  source: number;
  tag: number;
  seq: number;
  /** Set once matched or cancelled; a finished request never matches again. */
  done: boolean;
  /** Memory the message may be assembled in directly (recvInto). */
  into?: Uint8Array;
  /** Taken by a message whose bytes are still arriving (see Matcher.claim). */
  claimed?: boolean;
  complete(env: Envelope): void;
  /** Rejects the request (a lost peer, a mismatch, a freed communicator, finalize()). */
  fail?(err: Error): void;
}

/** Slots a new queue starts with (a power of two: indices wrap by mask). */
const FIFO_INITIAL = 4;

/**
 * A queue in a circular array that grows (doubling) only when full, so a queue that fills and
 * drains message by message allocates nothing.
 */
class Fifo<T> {
  private items: Array<T | undefined> = new Array<T | undefined>(FIFO_INITIAL).fill(undefined);
  private head = 0;
  private count = 0;
  get length(): number {
    return this.count;
  }
  private at(i: number): T | undefined {
    return this.items[(this.head + i) & (this.items.length - 1)];
  }
  peek(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }
  push(v: T): void {
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) & (this.items.length - 1)] = v;
    this.count++;
  }
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const v = this.items[this.head];
    this.items[this.head] = undefined; // the queue must not keep a taken message alive
    this.head = (this.head + 1) & (this.items.length - 1);
    this.count--;
    return v;
  }
  remove(v: T): boolean {
    const mask = this.items.length - 1;
    let i = 0;
    while (i < this.count && this.at(i) !== v) i++;
    if (i === this.count) return false;
    for (; i < this.count - 1; i++) this.items[(this.head + i) & mask] = this.at(i + 1);
    this.items[(this.head + i) & mask] = undefined;
    this.count--;
    return true;
  }
  private grow(): void {
    const next = new Array<T | undefined>(this.items.length * 2).fill(undefined);
    for (let i = 0; i < this.count; i++) next[i] = this.at(i);
    this.items = next;
    this.head = 0;
  }
  *[Symbol.iterator](): Generator<T> {
    for (let i = 0; i < this.count; i++) yield this.at(i)!;
  }
}

/**
 * Tags with a queue of their own that one source's table scans before it keeps an index. Below
 * it a lookup is a short scan; collectives use a new tag on every call, and a Map that gains and
 * loses a key per message rehashes every few calls (docs/decisions.md).
 */
const SCANNED_TAGS = 16;

/**
 * One source's queues, by tag. A queue that empties keeps its slot and is handed to the next
 * new tag, so tags that come and go (a new one per call) allocate nothing. Past SCANNED_TAGS
 * queues in use at once, a Map indexes the slots; when the source has nothing queued again,
 * the slots past SCANNED_TAGS go.
 */
class TagQueues<T> {
  private tags: number[] = [];
  private queues: Array<Fifo<T>> = [];
  /** Slots whose queue emptied (some may have filled again since: checked when taken). */
  private free: number[] = [];
  private isFree: boolean[] = [];
  private index: Map<number, number> | undefined;
  /** Entries queued under this source, all tags. */
  size = 0;

  get(tag: number): Fifo<T> | undefined {
    if (this.index !== undefined) {
      const i = this.index.get(tag);
      return i === undefined ? undefined : this.queues[i];
    }
    const tags = this.tags;
    for (let i = 0; i < tags.length; i++) if (tags[i] === tag) return this.queues[i];
    return undefined;
  }

  /** The queue of `tag`, taking a free slot or a new one. */
  obtain(tag: number): Fifo<T> {
    const q = this.get(tag);
    if (q !== undefined) return q;
    while (this.free.length > 0) {
      const i = this.free.pop()!;
      this.isFree[i] = false;
      if (this.queues[i]!.length > 0) continue; // its tag came back meanwhile
      this.index?.delete(this.tags[i]!);
      this.index?.set(tag, i);
      this.tags[i] = tag;
      return this.queues[i]!;
    }
    const i = this.tags.length;
    this.tags.push(tag);
    const fresh = new Fifo<T>();
    this.queues.push(fresh);
    this.isFree.push(false);
    if (this.index !== undefined) this.index.set(tag, i);
    else if (i + 1 > SCANNED_TAGS) this.index = new Map(this.tags.map((t, j) => [t, j]));
    return fresh;
  }

  /** The queue at `tag` emptied. */
  emptied(tag: number): void {
    if (this.size === 0 && this.tags.length > SCANNED_TAGS) {
      // A burst of many tags is over: back to a short scanned table.
      this.tags.length = this.queues.length = SCANNED_TAGS;
      this.free = [];
      this.isFree = new Array<boolean>(SCANNED_TAGS).fill(false);
      this.index = undefined;
      for (let i = 0; i < SCANNED_TAGS; i++) this.release(i);
      return;
    }
    const i = this.index !== undefined ? this.index.get(tag)! : this.tags.indexOf(tag);
    this.release(i);
  }

  private release(i: number): void {
    if (this.isFree[i]) return;
    this.isFree[i] = true;
    this.free.push(i);
  }

  /** Slots 0 .. slots-1, for walking every queue (an empty one's tag means nothing). */
  get slots(): number {
    return this.tags.length;
  }
  tagAt(i: number): number {
    return this.tags[i]!;
  }
  queueAt(i: number): Fifo<T> {
    return this.queues[i]!;
  }
}

/** source → tag → FIFO. Sources with nothing queued go once there are many, so wildcard searches stay short. */
class Table<T extends { seq: number }> {
  /** The sources that have a table, for walking them (wildcards, snapshots). */
  private readonly bySource = new Map<number, TagQueues<T>>();
  /**
   * The same tables at index source + 1 (ANY is -1; sources are ranks, checked before they get
   * here): the lookup every message and receive makes is an array load, not a hash lookup.
   */
  private readonly at: Array<TagQueues<T> | undefined> = [];
  size = 0;

  private tagsOf(source: number): TagQueues<T> | undefined {
    return this.at[source + 1];
  }

  push(source: number, tag: number, v: T): void {
    let tags = this.tagsOf(source);
    if (tags === undefined) {
      tags = new TagQueues();
      this.bySource.set(source, tags);
      // Grown one slot at a time, so the array stays dense (holes would make it a dictionary).
      while (this.at.length <= source + 1) this.at.push(undefined);
      this.at[source + 1] = tags;
    }
    tags.obtain(tag).push(v);
    tags.size++;
    this.size++;
  }

  queue(source: number, tag: number): Fifo<T> | undefined {
    return this.tagsOf(source)?.get(tag);
  }

  /** The oldest entry stored under a (source, tag) pattern, where ANY in the pattern is a wildcard. */
  oldest(source: number, tag: number): { q: Fifo<T>; source: number; tag: number } | undefined {
    if (source !== ANY && tag !== ANY) {
      // The common case: one queue, no search.
      const q = this.queue(source, tag);
      return q !== undefined && q.length > 0 ? { q, source, tag } : undefined;
    }
    let best: { q: Fifo<T>; source: number; tag: number } | undefined;
    let bestSeq = Infinity;
    const consider = (q: Fifo<T> | undefined, s: number, t: number) => {
      const h = q?.peek();
      if (h !== undefined && h.seq < bestSeq) {
        bestSeq = h.seq;
        best = { q: q!, source: s, tag: t };
      }
    };
    if (source !== ANY) {
      const tags = this.tagsOf(source);
      if (tags === undefined) return undefined;
      if (tag !== ANY) consider(tags.get(tag), source, tag);
      else for (let i = 0; i < tags.slots; i++) consider(tags.queueAt(i), source, tags.tagAt(i));
    } else {
      for (const [s, tags] of this.bySource) {
        if (tag !== ANY) consider(tags.get(tag), s, tag);
        else for (let i = 0; i < tags.slots; i++) consider(tags.queueAt(i), s, tags.tagAt(i));
      }
    }
    return best;
  }

  shiftFrom(q: Fifo<T>, source: number, tag: number): T {
    const v = q.shift()!;
    this.taken(q, source, tag);
    return v;
  }

  remove(source: number, tag: number, v: T): boolean {
    const q = this.queue(source, tag);
    if (q === undefined || !q.remove(v)) return false;
    this.taken(q, source, tag);
    return true;
  }

  private taken(q: Fifo<T>, source: number, tag: number): void {
    this.size--;
    const tags = this.tagsOf(source)!;
    tags.size--;
    if (q.length > 0) return;
    tags.emptied(tag);
    if (tags.size === 0 && this.bySource.size > KEEP_SOURCES) {
      this.bySource.delete(source);
      this.at[source + 1] = undefined;
    }
  }

  /** The head of the first non-empty queue whose tag `test` accepts (no copies: a cheap scan). */
  find(test: (tag: number, arg: number) => boolean, arg: number): T | undefined {
    for (const tags of this.bySource.values()) {
      for (let i = 0; i < tags.slots; i++) {
        const q = tags.queueAt(i);
        if (q.length > 0 && test(tags.tagAt(i), arg)) return q.peek();
      }
    }
    return undefined;
  }

  *values(): Generator<T> {
    for (const tags of this.bySource.values()) for (let i = 0; i < tags.slots; i++) yield* tags.queueAt(i);
  }
}

export class Matcher {
  private readonly unexpected = new Table<Envelope>();
  private readonly posted = new Table<Request>();
  /** Blocking probes: they match without consuming, so every one that fits is told. */
  private probes: Request[] = [];

  /**
   * Whether the next message to arrive from `source` with `tag` would be the one a receive for
   * exactly (source, tag) gets: nothing of theirs queued, and no receive or probe posted that
   * could take it first.
   */
  quietFor(source: number, tag: number): boolean {
    if (this.posted.size !== 0 || this.probes.length !== 0) return false;
    const q = this.unexpected.queue(source, tag);
    return q === undefined || q.length === 0;
  }

  get pendingReceives(): number {
    return this.posted.size + this.probes.length;
  }

  get unexpectedCount(): number {
    return this.unexpected.size;
  }

  /** A message arrived: hand it to the oldest posted receive that fits, else queue it. */
  arrive(env: Envelope): void {
    // Four patterns can match (source|ANY) × (tag|ANY); the oldest posted one wins. Without
    // posted wildcards (the common case) only the exact queue can.
    let best: Request | undefined;
    let bs = 0;
    let bt = 0;
    const patterns = this.wildcards === 0 ? 1 : 4;
    for (let i = 0; i < patterns; i++) {
      const s = i & 1 ? ANY : env.source;
      const t = i & 2 ? ANY : env.tag;
      const h = this.posted.queue(s, t)?.peek();
      if (h !== undefined && (best === undefined || h.seq < best.seq)) {
        best = h;
        bs = s;
        bt = t;
      }
    }
    if (best !== undefined) {
      this.posted.shiftFrom(this.posted.queue(bs, bt)!, bs, bt);
      if (bs === ANY || bt === ANY) this.wildcards--;
      best.done = true;
      best.complete(env);
      return;
    }
    this.unexpected.push(env.source, env.tag, env);
    if (this.probes.length > 0) this.wakeProbes(env);
  }

  /** Posts a receive: takes the oldest queued message that fits, or waits for one. */
  post(req: Request): void {
    const exact = req.source !== ANY && req.tag !== ANY;
    let s = req.source;
    let t = req.tag;
    let q: Fifo<Envelope> | undefined;
    if (exact) {
      // The common case: one queue, and no search result object.
      q = this.unexpected.queue(s, t);
    } else {
      const hit = this.unexpected.oldest(s, t);
      if (hit !== undefined) ({ q, source: s, tag: t } = hit);
    }
    if (q !== undefined && q.length > 0) {
      const env = this.unexpected.shiftFrom(q, s, t);
      req.done = true;
      req.complete(env);
      return;
    }
    this.posted.push(req.source, req.tag, req);
    if (!exact) this.wildcards++;
  }

  /** Posted receives with ANY_SOURCE or ANY_TAG still waiting. */
  private wildcards = 0;

  /** The message a receive posted now would take, left queued. */
  peek(source: number, tag: number): Envelope | undefined {
    const hit = this.unexpected.oldest(source, tag);
    return hit?.q.peek();
  }

  /** Takes the message a receive posted now would take, or undefined (improbe). */
  take(source: number, tag: number): Envelope | undefined {
    const hit = this.unexpected.oldest(source, tag);
    return hit === undefined ? undefined : this.unexpected.shiftFrom(hit.q, hit.source, hit.tag);
  }

  /** Waits for a message that fits without consuming it. */
  probe(req: Request): void {
    const env = this.peek(req.source, req.tag);
    if (env !== undefined) {
      req.done = true;
      req.complete(env);
    } else this.probes.push(req);
  }

  /**
   * A large message from `source` with `tag` has started to arrive. If the receive it is bound
   * to match is already posted with a buffer that fits, take that receive now (so the transport
   * can write straight into its buffer) and return it. Only when the choice cannot change by
   * the time the message completes: an exact (source, tag) receive, the oldest one, with no
   * older wildcard receive that would take the message instead.
   */
  claim(source: number, tag: number, byteLength: number): Request | undefined {
    const q = this.posted.queue(source, tag);
    const head = q?.peek();
    if (head === undefined || head.into === undefined || head.into.byteLength < byteLength) return undefined;
    if (this.wildcards > 0 && (this.olderAt(ANY, tag, head) || this.olderAt(source, ANY, head) || this.olderAt(ANY, ANY, head))) {
      return undefined;
    }
    this.posted.shiftFrom(q!, source, tag);
    head.claimed = true;
    return head;
  }

  /** Whether a receive posted under (source, tag) is older than `than`. */
  private olderAt(source: number, tag: number, than: Request): boolean {
    const w = this.posted.queue(source, tag)?.peek();
    return w !== undefined && w.seq < than.seq;
  }

  /** Withdraws a receive or probe that has not matched yet. */
  cancel(req: Request): boolean {
    if (req.done || req.claimed) return false;
    req.done = true;
    const i = this.probes.indexOf(req);
    if (i >= 0) {
      this.probes.splice(i, 1);
      return true;
    }
    const removed = this.posted.remove(req.source, req.tag, req);
    if (removed && (req.source === ANY || req.tag === ANY)) this.wildcards--;
    return removed;
  }

  /** A queued message whose tag `test(tag, arg)` accepts, if any. */
  findUnexpected(test: (tag: number, arg: number) => boolean, arg: number): Envelope | undefined {
    return this.unexpected.size === 0 ? undefined : this.unexpected.find(test, arg);
  }

  /** What waits here, oldest first within each queue (for a rank's report: report.ts). */
  snapshot(): { posted: Request[]; probes: Request[]; unexpected: Envelope[] } {
    return { posted: [...this.posted.values()], probes: [...this.probes], unexpected: [...this.unexpected.values()] };
  }

  /** Every posted receive and probe, for failing them all when the communicator breaks. */
  drainPosted(): Request[] {
    const all = [...this.posted.values(), ...this.probes];
    for (const r of all) this.cancel(r);
    return all;
  }

  private wakeProbes(env: Envelope): void {
    const still: Request[] = [];
    for (const p of this.probes) {
      if ((p.source === ANY || p.source === env.source) && (p.tag === ANY || p.tag === env.tag)) {
        p.done = true;
        p.complete(env);
      } else still.push(p);
    }
    this.probes = still;
  }
}
