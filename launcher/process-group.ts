// How the agent starts a rank (or a thread host) in a process group of its own, so that it and
// whatever it starts are signalled together (kill(-pgid)): through the native helper ivcom_pgrp,
// which makes the group without a session of its own. setsid() (Node's `detached`) would also
// give every rank a scheduling group of its own (the kernel's autogroups, keyed by session), and
// then ranks that share a core do not yield to each other: sched_yield only reorders the
// yielder's own group (kmod/src/pgrp.c; docs/performance.md, stop 25).

import { accessSync, constants } from 'node:fs';
import { builtFile } from '../kmod/package-root.js';

export interface GroupLaunch {
  /** argv prefix that runs the program in a new process group. */
  prefix: string[];
  /** spawn's `detached` (setsid): only when the helper is not there. */
  detached: boolean;
}

let launch: GroupLaunch | undefined;

export function ownGroup(): GroupLaunch {
  if (launch !== undefined) return launch;
  let helper: string | undefined;
  try {
    helper = builtFile(import.meta.url, 'ivcom_pgrp');
    accessSync(helper, constants.X_OK);
  } catch {
    helper = undefined;
  }
  // Without it (the native part was not built) a session of its own still makes the group;
  // crowded ranks then yield to each other less well, which is the least of what they lack.
  launch = helper !== undefined ? { prefix: [helper], detached: false } : { prefix: [], detached: true };
  return launch;
}
