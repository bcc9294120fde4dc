// The plan: which host and which co-resident domain ("VM") each rank lives in. Co-residency is
// decided here and only here (network namespaces do not isolate shared memory, so "can I open
// the segment?" would lie).

import type { HostSlots } from './hosts/hostfile.js';

export interface RankPlacement {
  rank: number;
  /** Host index in `Plan.hosts`. */
  node: number;
  /** Domain index, unique across the job. */
  domain: number;
}

export interface PlanHost {
  name: string;
  /** Consecutive world ranks. */
  ranks: number[];
}

export interface Plan {
  size: number;
  domains: number;
  ranks: RankPlacement[];
  /** Hosts that run at least one rank, in the order they were given. */
  hosts: PlanHost[];
}

/** This machine alone, with no slot limit: more ranks than cores is a supported way to run. */
export const LOCAL_ONLY: HostSlots[] = [{ name: 'localhost', slots: undefined }];

/**
 * Ranks fill the hosts in order, each up to its slots (Open MPI's default mapping). Past the
 * slots of every host the job is oversubscribed: refused unless `oversubscribe`, then the rest go
 * round the hosts one at a time. Each host's ranks are split into `vmsPerHost` domains of
 * consecutive ranks (default: one per rank); the first ones get one more when it does not divide.
 */
export function makePlan(size: number, vmsPerHost: number | undefined, hosts: HostSlots[] = LOCAL_ONLY, oversubscribe = false): Plan {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`-n must be a positive integer, got ${size}`);
  const counts = hosts.map(() => 0);
  let left = size;
  hosts.forEach((h, i) => {
    const take = Math.min(left, h.slots ?? left);
    counts[i] = take;
    left -= take;
  });
  if (left > 0) {
    const slots = hosts.reduce((s, h) => s + (h.slots ?? 0), 0);
    if (!oversubscribe) {
      throw new RangeError(
        `-n ${size} is more than the ${slots} slot${slots === 1 ? '' : 's'} of ${hosts.map((h) => `${h.name}:${h.slots}`).join(',')}; give fewer ranks, more slots, or --oversubscribe`,
      );
    }
    for (let i = 0; left > 0; i = (i + 1) % hosts.length, left--) counts[i]!++;
  }
  const used = hosts.map((h, i) => ({ name: h.name, count: counts[i]! })).filter((h) => h.count > 0);
  const fewest = Math.min(...used.map((h) => h.count));
  const vms = vmsPerHost ?? fewest;
  if (vmsPerHost !== undefined && (!Number.isInteger(vms) || vms < 1 || vms > fewest)) {
    throw new RangeError(
      used.length === 1
        ? `--vms must be an integer from 1 to ${size} (the number of ranks), got ${vmsPerHost}`
        : `--vms (domains per host) must be an integer from 1 to ${fewest}, the fewest ranks a host runs, got ${vmsPerHost}`,
    );
  }
  const ranks: RankPlacement[] = [];
  const planHosts: PlanHost[] = [];
  let r = 0;
  let domain = 0;
  used.forEach((h, node) => {
    const perHost = vmsPerHost === undefined ? h.count : vms;
    const base = Math.floor(h.count / perHost);
    const extra = h.count % perHost;
    const host: PlanHost = { name: h.name, ranks: [] };
    for (let d = 0; d < perHost; d++, domain++) {
      for (let i = 0; i < base + (d < extra ? 1 : 0); i++) {
        host.ranks.push(r);
        ranks.push({ rank: r++, node, domain });
      }
    }
    planHosts.push(host);
  });
  return { size, domains: domain, ranks, hosts: planHosts };
}
