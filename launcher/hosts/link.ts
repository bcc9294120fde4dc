// What the job sees of a host: the agent that runs its ranks, in this process (the head's own
// host) or behind ssh/srun (every other host). Both speak in the same events.

import type { EncodedMessage, LauncherMessage } from '../../transport/bootstrap/protocol.js';
import type { AgentEvents } from '../agent.js';

export interface HostEvents extends AgentEvents {
  /** The host's agent is gone before the job finished (ssh dropped, srun died): its ranks are lost. */
  lost(why: string): void;
}

export interface HostLink {
  send(rank: number, msg: LauncherMessage | EncodedMessage): void;
  /** Signals the host's ranks, all but `spare` (a rank leaving by itself, still printing why). */
  kill(signal: NodeJS.Signals, spare?: number): void;
  /** After every rank of the host has exited: forward the last output, release everything. */
  finish(): Promise<void>;
  /** Cut the link at once (the host stopped answering); its agent ends its ranks when it notices. */
  drop(): void;
}
