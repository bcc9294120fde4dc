// A job: spawn the ranks, serve the bootstrap channel, forward output, supervise, clean up.
// ivrun plays Xen's dom0 here: it owns the registry of ranks, hands out the job secret and the
// channel grants, and is the only one that can end the job.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import {
  BOOTSTRAP_FD_ENV,
  readMessages,
  writeMessage,
  type PeerInfo,
  type RankMessage,
  type TransportMode,
} from '../transport/bootstrap/protocol.js';
import { forwardLines, type LineSink } from './output.js';
import type { Plan } from './plan.js';

export interface JobOptions {
  jobId: string;
  plan: Plan;
  command: string[];
  env: Record<string, string>;
  tagOutput: boolean;
  timeoutSec?: number;
  transport: TransportMode;
  ringBytes: number;
  /** Grace between SIGTERM and SIGKILL when the job is torn down. */
  killGraceMs?: number;
}

/** A broker for channel grants (the shared-memory transport); absent → ranks use TCP only. */
export interface GrantBroker {
  /** The fd a rank's process should inherit to receive grants on, or undefined. */
  rankFd(rank: number): number | undefined;
  /** `from` asked for a channel to `to`. */
  request(from: number, to: number): void;
  /** Called after spawning: the launcher's copies of the rank ends can go. */
  spawned(rank: number): void;
  close(): void;
}

interface RankState {
  rank: number;
  child: ChildProcess;
  ctl: Socket;
  hello?: { host: string; port: number; pid: number };
  exited: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  abortReason?: string;
  /** The peer whose loss made this rank abort (its own failure is the cause to report). */
  lostPeer?: RankState;
  /** This rank's failure, held back until its lost peer's exit is seen (or a grace period). */
  heldFailure?: () => void;
  finalized: boolean;
  stderr: LineSink;
  streams: Promise<void>;
}

const SETPRIV = '/usr/bin/setpriv';
/** How long a rank that only lost a peer waits for that peer's own failure to be reported. */
const SECONDARY_GRACE_MS = 250;

export class Job {
  private readonly ranks: RankState[] = [];
  private readonly secret = randomBytes(32);
  readonly jobId: string;
  private tearingDown = false;
  private exitCode = 0;
  private started = false;
  private killTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private resolveDone!: (code: number) => void;
  readonly done = new Promise<number>((r) => (this.resolveDone = r));

  constructor(
    private readonly o: JobOptions,
    private readonly grants?: GrantBroker,
  ) {
    this.jobId = o.jobId;
  }

  start(): void {
    const { plan, command } = this.o;
    // With setpriv, a rank gets SIGKILL the moment ivrun dies, however it dies: no orphans even
    // if ivrun itself is SIGKILLed. The runtime also leaves when its control channel closes.
    const prefix = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'KILL', '--'] : [];
    const [file, ...args] = [...prefix, ...command];
    for (const p of plan.ranks) {
      const grantFd = this.grants?.rankFd(p.rank);
      const stdio: Array<'pipe' | 'ignore' | 'inherit' | number> = [p.rank === 0 ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'];
      if (grantFd !== undefined) stdio.push(grantFd);
      const env: Record<string, string> = {
        ...this.o.env,
        IVCOM_RANK: String(p.rank),
        IVCOM_SIZE: String(plan.size),
        IVCOM_DOMAIN: String(p.domain),
        IVCOM_NODE: String(p.node),
        IVCOM_JOBID: this.jobId,
        [BOOTSTRAP_FD_ENV]: '3',
      };
      if (grantFd !== undefined) env.IVCOM_GRANT_FD = '4';
      const child = spawn(file!, args, { stdio, env, detached: true });
      this.grants?.spawned(p.rank);
      const ctl = child.stdio[3] as Socket;
      const tag = this.o.tagOutput ? `[${p.rank}] ` : '';
      const st: RankState = {
        rank: p.rank,
        child,
        ctl,
        exited: false,
        code: null,
        signal: null,
        finalized: false,
        stderr: { tail: [] },
        streams: Promise.resolve(),
      };
      st.streams = Promise.all([
        forwardLines(child.stdout!, process.stdout, tag),
        forwardLines(child.stderr!, process.stderr, tag, st.stderr),
      ]).then(() => {});
      this.ranks.push(st);
      if (p.rank === 0 && child.stdin) {
        child.stdin.on('error', () => {});
        if (!process.stdin.isTTY) process.stdin.pipe(child.stdin);
      }
      child.on('error', (err) => {
        this.fail(st, `could not be started: ${err.message}. Is '${command[0]}' on PATH?`, 127);
      });
      child.on('exit', (code, signal) => this.onExit(st, code, signal));
      ctl.on('error', () => {});
      readMessages<RankMessage>(
        ctl,
        (m) => this.onMessage(st, m),
        (line) => this.fail(st, `broke the control protocol (sent ${JSON.stringify(line.slice(0, 60))})`, 1),
      );
    }
    if (this.o.timeoutSec !== undefined) {
      this.timeoutTimer = setTimeout(() => {
        const running = this.ranks.filter((r) => !r.exited).map((r) => r.rank);
        this.say(`job timed out after ${this.o.timeoutSec} s (--timeout); ending ranks ${running.join(', ')}`);
        this.teardown(124);
      }, this.o.timeoutSec * 1000);
    }
  }

  /** SIGINT/SIGTERM to ivrun: pass it on to every rank, then make sure they go. */
  signal(sig: NodeJS.Signals): void {
    if (this.tearingDown) {
      this.killAll('SIGKILL');
      return;
    }
    this.say(`received ${sig}; passing it to every rank`);
    this.teardown(128 + (osConstants.signals[sig] ?? 15), sig);
  }

  private onMessage(st: RankState, m: RankMessage): void {
    switch (m.op) {
      case 'hello': {
        if (m.rank !== st.rank || st.hello) {
          this.fail(st, `registered as rank ${m.rank} twice or under the wrong rank`, 1);
          return;
        }
        st.hello = { host: m.host, port: m.port, pid: m.pid };
        if (this.ranks.length === this.o.plan.size && this.ranks.every((r) => r.hello)) this.release();
        return;
      }
      case 'grant':
        if (!this.started || !Number.isInteger(m.peer) || m.peer < 0 || m.peer >= this.o.plan.size || m.peer === st.rank) {
          this.fail(st, `asked for a channel to invalid rank ${m.peer}`, 1);
        } else if (!this.grants) {
          this.fail(st, 'asked for a shared-memory channel but this ivrun has no grant broker', 1);
        } else this.grants.request(st.rank, m.peer);
        return;
      case 'abort': {
        st.abortReason = m.reason;
        const code = Number.isInteger(m.code) && m.code > 0 && m.code < 256 ? m.code : 1;
        const lost = this.ranks[m.lostPeer ?? -1];
        if (lost !== undefined && lost !== st) st.lostPeer = lost;
        this.failUnlessSecondary(st, `aborted the job: ${m.reason}`, code);
        return;
      }
      case 'finalize':
        st.finalized = true;
        return;
    }
  }

  /** Everyone registered: the startup barrier opens and each rank learns its peers. */
  private release(): void {
    this.started = true;
    const peers: PeerInfo[] = this.o.plan.ranks.map((p) => ({
      host: this.ranks[p.rank]!.hello!.host,
      port: this.ranks[p.rank]!.hello!.port,
      node: p.node,
      domain: p.domain,
    }));
    for (const r of this.ranks) {
      writeMessage(r.ctl, {
        op: 'start',
        jobId: this.jobId,
        size: this.o.plan.size,
        secret: this.secret.toString('base64'),
        transport: this.o.transport,
        ringBytes: this.o.ringBytes,
        peers,
      });
    }
  }

  private onExit(st: RankState, code: number | null, signal: NodeJS.Signals | null): void {
    st.exited = true;
    st.code = code;
    st.signal = signal;
    if (!this.tearingDown) {
      if (signal) this.fail(st, `was killed by signal ${signal}`, 128 + (osConstants.signals[signal] ?? 0));
      else if (code !== 0) this.failUnlessSecondary(st, `exited with code ${code}${this.cause(st)}`, code ?? 1);
      else if (!st.hello && this.ranks.some((r) => r.hello) && !this.started) {
        this.fail(st, 'exited before calling init() while the other ranks wait for it at startup', 1);
      }
    }
    // Failures held back for this rank's exit: reported now if its own exit did not end the job
    // (it exited cleanly, or it was not the cause), before the job can finish without them.
    for (const r of this.ranks) if (r.lostPeer === st) r.heldFailure?.();
    if (this.ranks.length === this.o.plan.size && this.ranks.every((r) => r.exited)) void this.finish();
  }

  private cause(st: RankState): string {
    if (st.abortReason) return ` (${st.abortReason})`;
    const line = [...st.stderr.tail].reverse().find((l) => /^\s*(\w*Error|Uncaught|\w*Exception)\b/.test(l));
    return line ? ` (${line.trim()})` : '';
  }

  /**
   * A rank that aborted because it lost a peer is a consequence, not a cause: that peer's own
   * exit is about to be reported. Give it a moment to arrive so the job is blamed on the right
   * rank. Both the rank's abort message and its exit come here: either may be seen first.
   */
  private failUnlessSecondary(st: RankState, why: string, code: number): void {
    const lost = st.lostPeer;
    if (lost !== undefined && !lost.exited && !this.tearingDown) {
      if (st.heldFailure !== undefined) return; // its abort is already held; the exit adds nothing
      const timer = setTimeout(() => st.heldFailure?.(), SECONDARY_GRACE_MS);
      st.heldFailure = () => {
        st.heldFailure = undefined;
        clearTimeout(timer);
        this.fail(st, why, code);
      };
      return;
    }
    this.fail(st, why, code);
  }

  private fail(st: RankState, why: string, code: number): void {
    if (this.tearingDown) return;
    const running = this.ranks.filter((r) => !r.exited && r !== st).length;
    this.say(`rank ${st.rank} ${why}; ending the job${running ? ` (stopping ${running} other rank${running > 1 ? 's' : ''})` : ''}`);
    this.teardown(code);
  }

  private teardown(code: number, sig: NodeJS.Signals = 'SIGTERM'): void {
    this.tearingDown = true;
    this.exitCode = code === 0 ? 1 : code;
    this.killAll(sig);
    // Ranks get a moment to leave cleanly, then they are killed: the job must end within 1 s.
    this.killTimer = setTimeout(() => this.killAll('SIGKILL'), this.o.killGraceMs ?? 400);
  }

  private killAll(sig: NodeJS.Signals): void {
    for (const r of this.ranks) {
      if (r.exited || r.child.pid === undefined) continue;
      try {
        // The whole process group: whatever the rank started goes too.
        process.kill(-r.child.pid, sig);
      } catch {
        try {
          r.child.kill(sig);
        } catch {
          // already gone
        }
      }
    }
  }

  private async finish(): Promise<void> {
    // Every rank has exited. Whatever is left in a rank's process group (its own children) goes
    // now: nothing outlives the job, and nothing else then holds the output pipes open.
    for (const r of this.ranks) {
      try {
        if (r.child.pid !== undefined) process.kill(-r.child.pid, 'SIGKILL');
      } catch {
        // no group left: the normal case
      }
    }
    // Then forward every last line. The pipes close as soon as the kernel has reaped those
    // processes; the cap only guards against a descendant that left the group (setsid).
    await Promise.race([Promise.all(this.ranks.map((r) => r.streams)), new Promise((r) => setTimeout(r, 10_000).unref())]);
    clearTimeout(this.killTimer);
    clearTimeout(this.timeoutTimer);
    this.grants?.close();
    process.stdin.unpipe();
    this.resolveDone(this.exitCode);
  }

  private say(msg: string): void {
    process.stderr.write(`ivrun: ${msg}\n`);
  }
}
