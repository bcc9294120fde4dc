// Every process the launcher starts (ranks, namespace holders, ssh/srun) is tied to the life of
// the process that starts it: setpriv sets PR_SET_PDEATHSIG, so the kernel sends SIGKILL the
// moment the parent dies, however it dies (SIGKILL included), and exec keeps it. This is what
// makes "nothing outlives the job" hold by construction rather than by cleanup code.

import { existsSync } from 'node:fs';

const SETPRIV = '/usr/bin/setpriv';

/** argv prefix for a child that must die with its parent (empty where util-linux lacks setpriv). */
export const TIED: readonly string[] = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'KILL', '--'] : [];
