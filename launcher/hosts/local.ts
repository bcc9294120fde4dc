// The head's own host: its agent runs inside ivrun itself, no channel in between.

import type { EncodedMessage, LauncherMessage } from '../../transport/bootstrap/protocol.js';
import type { HostSpec } from '../agent-protocol.js';
import { HostAgent } from '../agent.js';
import type { HostEvents, HostLink } from './link.js';

export class LocalHost implements HostLink {
  private constructor(private readonly agent: HostAgent) {}

  static async start(spec: HostSpec, events: HostEvents): Promise<LocalHost> {
    return new LocalHost(await HostAgent.start(spec, events));
  }

  send(rank: number, msg: LauncherMessage | EncodedMessage): void {
    this.agent.send(rank, msg);
  }

  kill(signal: NodeJS.Signals, spare?: number): void {
    this.agent.kill(signal, spare);
  }

  finish(): Promise<void> {
    return this.agent.finish();
  }

  drop(): void {
    this.agent.kill('SIGKILL');
  }
}
