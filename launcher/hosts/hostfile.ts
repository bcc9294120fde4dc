// Host lists as users of mpirun write them: Open MPI hostfiles (`host slots=N`), MPICH's
// (`host:N`), and `-H host:slots,...`. Lines naming a host again add to its slots.

import { isIP } from 'node:net';
import { hostname } from 'node:os';

export interface HostSlots {
  name: string;
  /** Ranks the host takes before the job counts as oversubscribed; undefined: as many as asked. */
  slots: number | undefined;
}

/** Host names as ssh takes them, a user@ prefix included. */
const NAME = /^([A-Za-z0-9_.-]+@)?[A-Za-z0-9_.-]+$/;

/** A host name or address; an IPv6 address may come in brackets. */
function hostName(text: string, where: string): string {
  const name = text.replace(/^\[(.*)\]$/, '$1');
  if (!(NAME.test(name) || isIP(name) !== 0)) throw new Error(`${where}: '${text}' is not a host name`);
  return name;
}

function add(hosts: HostSlots[], name: string, slots: number): void {
  const known = hosts.find((h) => h.name === name);
  if (known !== undefined) known.slots = (known.slots ?? 0) + slots;
  else hosts.push({ name, slots });
}

function slotCount(text: string, where: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new Error(`${where}: slots must be a positive integer, got '${text}'`);
  return n;
}

/** A hostfile's text; `file` names it in errors (with the line number). */
export function parseHostfile(text: string, file: string): HostSlots[] {
  const hosts: HostSlots[] = [];
  text.split('\n').forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const [first, ...rest] = line.split(/\s+/) as [string, ...string[]];
    let name = first;
    let slots = 1;
    const colon = /^(.*[^:]):(\d+)$/.exec(first);
    // host:N is MPICH's form; an IPv6 address needs brackets to carry it ([::1]:4).
    if (colon !== null && (!colon[1]!.includes(':') || colon[1]!.startsWith('['))) {
      name = colon[1]!;
      slots = slotCount(colon[2]!, where);
    }
    for (const attr of rest) {
      const m = /^(slots|max[-_]slots)=(.*)$/.exec(attr);
      if (m === null) throw new Error(`${where}: unknown attribute '${attr}'; expected 'slots=N' (Open MPI) or 'host:N' (MPICH)`);
      // max_slots only caps oversubscription in Open MPI; ivrun does not cap, so it is accepted and ignored.
      if (m[1] === 'slots') slots = slotCount(m[2]!, where);
    }
    add(hosts, hostName(name, where), slots);
  });
  if (hosts.length === 0) throw new Error(`${file}: names no host; write one host per line, e.g. 'node1 slots=4'`);
  return hosts;
}

/** `-H a:2,b,c:4` (a host without a count has one slot, as in Open MPI). */
export function parseHostList(text: string): HostSlots[] {
  const hosts: HostSlots[] = [];
  for (const item of text.split(',')) {
    const t = item.trim();
    if (t === '') throw new Error(`-H ${text}: empty host name; write -H host1:2,host2:2`);
    const m = /^(.*[^:]):(\d+)$/.exec(t);
    const [name, slots] = m !== null && (!m[1]!.includes(':') || m[1]!.startsWith('[')) ? [m[1]!, slotCount(m[2]!, `-H ${t}`)] : [t, 1];
    add(hosts, hostName(name, '-H'), slots);
  }
  return hosts;
}

/** Names that mean the machine ivrun runs on: its ranks start here, without ssh. */
export function isLocalHost(name: string): boolean {
  return name === 'localhost' || name === '127.0.0.1' || name === '::1' || name === hostname() || name === hostname().split('.')[0];
}
