// Another host: ivrun starts itself there as that host's agent, through ssh or srun, and speaks
// the agent protocol over the child's stdin/stdout. The child is tied to ivrun's life
// (pdeathsig): when ivrun dies, however it dies, ssh/srun dies, the agent sees its stdin close,
// and it kills its ranks (which are tied to the agent the same way).

import { spawn, type ChildProcess } from 'node:child_process';
import { EncodedMessage, readMessages, writeMessage, type LauncherMessage } from '../../transport/bootstrap/protocol.js';
import type { AgentMessage, HeadMessage, HostSpec } from '../agent-protocol.js';
import { forwardLines } from '../output.js';
import { TIED } from '../tie.js';
import type { HostEvents, HostLink } from './link.js';

/** After `finish`, how long the agent has to forward its last lines and leave. */
const FINISH_CAP_MS = 10_000;
/** Lines of the launcher's stderr kept to explain a failure (ssh's own messages are short). */
const STDERR_TAIL = 5;

export interface Where {
  /** Where this host's ranks listen. */
  address: string;
  /** The head's address as this host sees it. */
  head?: string;
}

export class RemoteHost implements HostLink {
  private readonly child: ChildProcess;
  private readonly tail: string[] = [];
  private finished = false;
  private onFinished: (() => void) | undefined;
  /** Settles once the agent runs (its address known), or the launcher failed to start it. */
  readonly ready: Promise<Where>;

  /** `launcher`: the argv that runs `ivrun --agent` on the host (ssh …, srun …). */
  constructor(
    name: string,
    launcher: string[],
    spec: Omit<HostSpec, 'address' | 'stdin'>,
    private readonly events: HostEvents,
  ) {
    const [file, ...args] = [...TIED, ...launcher];
    // Its own process group: a Ctrl-C at the terminal reaches ivrun, which ends the job in
    // order, rather than cutting every host's link at once.
    this.child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.child.stdin!.on('error', () => {});
    let up: (w: Where) => void;
    let down: (e: Error) => void;
    this.ready = new Promise<Where>((resolve, reject) => ((up = resolve), (down = reject)));
    this.ready.catch(() => {});
    let isUp = false;
    const why = (code: number | null, signal: NodeJS.Signals | null) =>
      `${launcher[0]} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}${this.tail.length ? `: ${this.tail.join(' / ')}` : ''}`;
    this.child.on('error', (err) => down(new Error(`${launcher[0]} could not be run: ${err.message}`)));
    // Until the agent runs, what ssh says is kept for the failure message (said once, there).
    void forwardLines(this.child.stderr!, (line) => {
      this.tail.push(line.trim());
      if (this.tail.length > STDERR_TAIL) this.tail.shift();
      if (isUp) process.stderr.write(`ivrun: host ${name}: ${line}\n`);
    });
    readMessages<AgentMessage>(
      this.child.stdout!,
      (m) => {
        switch (m.op) {
          case 'ready':
            isUp = true;
            up({ address: m.address, head: m.head });
            return;
          case 'from-rank':
            return events.message(m.rank, m.msg);
          case 'line':
            return events.line(m.rank, m.fd, m.text);
          case 'exit':
            return events.exit(m.rank, m.code, m.signal);
          case 'rank-failed':
            return events.failed(m.rank, m.why, m.code);
          case 'failed':
            return events.lost(m.why);
          case 'finished':
            this.finished = true;
            this.onFinished?.();
            return;
        }
      },
      (line) => process.stderr.write(`ivrun: host ${name}: ${line}\n`),
    );
    this.child.on('close', (code, signal) => {
      if (!isUp) down(new Error(`could not start ivrun's agent there (${why(code, signal)})`));
      else if (!this.finished) events.lost(`lost its agent (${why(code, signal)})`);
      this.onFinished?.();
    });
    this.post({ op: 'spawn', spec });
  }

  private post(m: HeadMessage): void {
    if (this.child.stdin!.writable) writeMessage(this.child.stdin!, m);
  }

  send(rank: number, msg: LauncherMessage | EncodedMessage): void {
    if (msg instanceof EncodedMessage) {
      // Spliced in as it was encoded: the agent reads the same JSON line as if encoded here.
      if (this.child.stdin!.writable) this.child.stdin!.write(`{"op":"to-rank","rank":${rank},"msg":${msg.json}}\n`);
    } else this.post({ op: 'to-rank', rank, msg });
  }

  kill(signal: NodeJS.Signals, spare?: number): void {
    this.post({ op: 'kill', signal, spare });
  }

  async finish(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const done = new Promise<void>((r) => (this.onFinished = r));
      this.post({ op: 'finish' });
      const cap = setTimeout(() => this.drop(), FINISH_CAP_MS);
      await done;
      clearTimeout(cap);
    }
    this.child.stdin!.end();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      await new Promise<void>((r) => {
        const t = setTimeout(() => this.drop(), FINISH_CAP_MS);
        this.child.once('close', () => (clearTimeout(t), r()));
      });
    }
  }

  drop(): void {
    try {
      this.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
