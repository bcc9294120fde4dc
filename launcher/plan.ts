// The plan: which host and which co-resident domain ("VM") each rank lives in. Co-residency is
// decided here and only here (network namespaces do not isolate shared memory, so "can I open
// the segment?" would lie).

export interface RankPlacement {
  rank: number;
  /** Host index (0 = this machine). */
  node: number;
  /** Domain index, unique across the job. */
  domain: number;
}

export interface Plan {
  size: number;
  domains: number;
  ranks: RankPlacement[];
}

/** Blocks of consecutive ranks per domain; the first `size % domains` domains get one more. */
export function makePlan(size: number, domains: number): Plan {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`-n must be a positive integer, got ${size}`);
  if (!Number.isInteger(domains) || domains < 1 || domains > size) {
    throw new RangeError(`--vms must be an integer from 1 to -n (${size}), got ${domains}`);
  }
  const base = Math.floor(size / domains);
  const extra = size % domains;
  const ranks: RankPlacement[] = [];
  let r = 0;
  for (let d = 0; d < domains; d++) {
    const count = base + (d < extra ? 1 : 0);
    for (let i = 0; i < count; i++) ranks.push({ rank: r++, node: 0, domain: d });
  }
  return { size, domains, ranks };
}
