// What a rank says on stderr about TCP connections it refused. A stranger can open connections
// as fast as it likes; one line each would let it flood the job's output (and whatever reads it).
// So each kind of refusal is shown in full a few times, then only counted, and the counts are
// summarised now and then and once more when the transport closes.

/** Full lines shown per kind of refusal: enough to see who and why, not enough to flood. */
export const FULL_LINES_PER_REASON = 2;
/** How often the refusals not shown in full are summarised (one line per interval at most). */
export const SUMMARY_INTERVAL_MS = 10_000;

/** Why a connection was refused: the kinds counted apart in the summaries. */
export type RefusalReason =
  | 'not ivcom'
  | 'wrong rank'
  | 'impossible rank'
  | 'bad proof'
  | 'idle'
  | 'closed early'
  | 'job not started'
  | 'socket error';

export class RefusalLog {
  private readonly shown = new Map<RefusalReason, number>();
  /** Counted but not shown since the last summary. */
  private pending = new Map<RefusalReason, number>();
  private readonly total = new Map<RefusalReason, number>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /** `write` takes one line (no newline); `rank` names this rank in it. */
  constructor(
    private readonly rank: number,
    private readonly write: (line: string) => void,
  ) {}

  /** One refused connection: `from` is its address, `detail` the handshake's own words. */
  refused(reason: RefusalReason, from: string, detail: string): void {
    if (this.closed) return;
    this.total.set(reason, (this.total.get(reason) ?? 0) + 1);
    const shown = this.shown.get(reason) ?? 0;
    if (shown < FULL_LINES_PER_REASON) {
      this.shown.set(reason, shown + 1);
      const last = shown + 1 === FULL_LINES_PER_REASON ? ` (further '${reason}' refusals are counted, summarised every ${SUMMARY_INTERVAL_MS / 1000} s)` : '';
      this.write(`ivcom: rank ${this.rank} refused a TCP connection from ${from}: ${detail}${last}`);
      return;
    }
    this.pending.set(reason, (this.pending.get(reason) ?? 0) + 1);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.summarise(`in the last ${SUMMARY_INTERVAL_MS / 1000} s`), SUMMARY_INTERVAL_MS);
      this.timer.unref();
    }
  }

  /** Refusals of every kind so far. */
  get count(): number {
    let n = 0;
    for (const v of this.total.values()) n += v;
    return n;
  }

  /** The last summary, and the totals when some were not shown in full; says nothing after. */
  close(): void {
    if (this.closed) return;
    this.summarise('since the last summary');
    this.closed = true;
    const shown = [...this.shown.values()].reduce((a, b) => a + b, 0);
    if (this.count > shown) this.write(`ivcom: rank ${this.rank} refused ${this.count} TCP connections in all: ${counts(this.total)}`);
  }

  private summarise(when: string): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0) return;
    let n = 0;
    for (const v of this.pending.values()) n += v;
    this.write(`ivcom: rank ${this.rank} refused ${n} more TCP connection${n === 1 ? '' : 's'} ${when}: ${counts(this.pending)}`);
    this.pending = new Map();
  }
}

/** `120 not ivcom, 3 idle`, most frequent first. */
function counts(m: Map<RefusalReason, number>): string {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${n} ${reason}`)
    .join(', ');
}
