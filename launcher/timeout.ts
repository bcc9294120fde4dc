// --timeout and MPIEXEC_TIMEOUT: how long a job may run. One concept: the value as the user
// wrote it, and a deadline that means what it says however far away it is.

/** Open MPI and MPICH end a job after this many seconds when it is set; so does ivrun. */
export const TIMEOUT_ENV = 'MPIEXEC_TIMEOUT';

/**
 * setTimeout's ceiling (2^31 - 1 ms, ~24.8 days): Node fires a longer delay after 1 ms (with a
 * TimeoutOverflowWarning), so a longer deadline is waited out in steps of at most this.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Words a person writes for "no limit"; 0 too, as Open MPI's mpirun arms its timer only for a value above 0. */
const NO_LIMIT = new Set(['0', 'inf', 'infinity', 'none', 'unlimited']);

/** A decimal number of seconds, as in `1`, `2.5`, `3e6`: nothing else (no units, no hex). */
const SECONDS = /^\+?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * The limit in seconds that `text` asks for (`from` names it in errors: `--timeout`,
 * `MPIEXEC_TIMEOUT`), or undefined for none. Throws a RangeError naming the value and what to
 * write instead.
 */
export function parseTimeout(text: string, from: string): number | undefined {
  const t = text.trim();
  if (NO_LIMIT.has(t.toLowerCase())) return undefined;
  const s = SECONDS.test(t) ? Number(t) : NaN;
  if (!Number.isFinite(s) || s < 0) {
    const sep = from === TIMEOUT_ENV ? '=' : ' ';
    throw new RangeError(`${from}${sep}${JSON.stringify(text)} is not a number of seconds; give e.g. ${from}${sep}600, or 0 (or Infinity) for no limit`);
  }
  return s === 0 ? undefined : s;
}

/** Calls `fire` once `ms` have passed (any finite ms, however large); returns how to cancel. */
export function deadline(ms: number, fire: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  const arm = (left: number) => {
    timer = setTimeout(() => {
      if (cancelled) return;
      if (left > MAX_TIMER_MS) arm(left - MAX_TIMER_MS);
      else fire();
    }, Math.min(left, MAX_TIMER_MS));
  };
  if (Number.isFinite(ms)) arm(Math.max(0, ms));
  return () => {
    cancelled = true;
    clearTimeout(timer);
  };
}
