// A job: start every host's agent, serve the bootstrap (registry, startup barrier), forward
// output, supervise, end. ivrun plays Xen's dom0 of dom0s here: it owns the registry of ranks,
// hands out the job secret, and is the only one that can end the job. Each host's agent (the
// host's own dom0) spawns, grants and watches that host's ranks.

import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { EncodedMessage, type LauncherMessage, type PeerInfo, type RankMessage, type TransportMode } from '../transport/bootstrap/protocol.js';
import type { HostSpec, Isolation } from './agent-protocol.js';
import { LocalHost } from './hosts/local.js';
import type { HostEvents, HostLink } from './hosts/link.js';
import { RemoteHost } from './hosts/remote.js';
import type { Plan, PlanHost } from './plan.js';
import type { OutputFiles } from './output-files.js';
import { deadline } from './timeout.js';

export interface JobOptions {
  jobId: string;
  plan: Plan;
  command: string[];
  /** Environment of the ranks on this host. */
  env: Record<string, string>;
  /** What ranks on other hosts get over their agent's environment (-x exports only, as mpirun). */
  exports: Record<string, string>;
  cwd: string;
  tagOutput: boolean;
  timeoutSec?: number;
  /** What set the timeout, for the message that ends the job (--timeout or MPIEXEC_TIMEOUT). */
  timeoutFrom?: string;
  transport: TransportMode;
  isolation: Isolation;
  ringBytes: number;
  /** Large messages between co-resident ranks are copied once, process to process (--single-copy). */
  singleCopy: boolean;
  /** The world communicator's small collectives meet in the host group's slots (--host-slots). */
  hostSlots: boolean;
  /** argv that runs a host's agent; undefined: the host is this machine. */
  launcherFor(host: PlanHost): string[] | undefined;
  /** Grace between SIGTERM and SIGKILL when the job is torn down. */
  killGraceMs?: number;
  /** --output-filename: each rank's output to its own files instead of ivrun's. */
  outputFiles?: OutputFiles;
  /** --bind-to core: each rank on a CPU of its own. */
  bindTo?: 'core';
  oversubscribe?: boolean;
  /** --ranks-as threads: each domain's ranks are threads of one process. */
  ranksAs?: 'threads';
}

interface RankState {
  rank: number;
  host: HostLink | undefined;
  hostName: string;
  hello?: { host: string; port: number; pid: number };
  exited: boolean;
  abortReason?: string;
  /** The peer whose loss made this rank abort (its own failure is the cause to report). */
  lostPeer?: RankState;
  /** This rank's failure, held back until its lost peer's exit is seen (or a grace period). */
  heldFailure?: () => void;
  finalized: boolean;
  /** The peers it had shared-memory rings with, as it said at finalize(). */
  rings?: Set<number>;
  /** The other ranks were told that this one finished (finalized or exited 0). */
  announced?: boolean;
  /** Last lines the rank wrote to stderr, to name the cause when it fails. */
  tail: string[];
}

/** How long a rank that only lost a peer waits for that peer's own failure to be reported. */
const SECONDARY_GRACE_MS = 250;
/** After the final SIGKILL, how long a host may take to report its ranks' exits before its link is cut. */
const HOST_SILENCE_MS = 3000;
/** Stderr lines kept per rank to name a failure's cause. */
const TAIL_LINES = 30;
/** How long ranks get to say what they wait for (a rank in an await answers within milliseconds). */
const REPORT_WAIT_MS = 1000;
/** Past this many ranks startup takes seconds (spawning runs at ~100-200 ranks/s here), so ivrun says what it does. */
const LARGE_JOB_RANKS = 64;
/** How often a large job's startup progress is said while ranks are still joining. */
const PROGRESS_EVERY_MS = 5000;
/** A rank's report is cut here: it is for a person to read. */
const MAX_REPORT_LINES = 64;

export class Job {
  private readonly ranks: RankState[];
  private readonly hosts: HostLink[] = [];
  private readonly secret = randomBytes(32);
  readonly jobId: string;
  private tearingDown = false;
  private exitCode = 0;
  private started = false;
  private finishing = false;
  private killTimer: NodeJS.Timeout | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  private cancelTimeout: (() => void) | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private resolveDone!: (code: number) => void;
  readonly done = new Promise<number>((r) => (this.resolveDone = r));

  constructor(private readonly o: JobOptions) {
    this.jobId = o.jobId;
    this.ranks = o.plan.ranks.map((p) => ({
      rank: p.rank,
      host: undefined,
      hostName: o.plan.hosts[p.node]!.name,
      exited: false,
      finalized: false,
      tail: [],
    }));
  }

  start(): void {
    if (this.o.timeoutSec !== undefined) this.armTimeout(this.o.timeoutSec * 1000);
    const { size, hosts } = this.o.plan;
    if (size > LARGE_JOB_RANKS) {
      this.say(`starting ${size} ranks on ${hosts.length} host${hosts.length === 1 ? '' : 's'}`);
      this.progressTimer = setInterval(() => {
        const joined = this.ranks.filter((r) => r.hello !== undefined).length;
        const exited = this.ranks.filter((r) => r.exited).length;
        this.say(`${joined} of ${size} ranks have joined the job (called init())${exited > 0 ? `, ${exited} exited` : ''}`);
      }, PROGRESS_EVERY_MS);
      this.progressTimer.unref();
    }
    void this.launch();
  }

  private armTimeout(ms: number): void {
    this.cancelTimeout = deadline(ms, () => {
      this.say(`job timed out after ${this.o.timeoutSec} s (${this.o.timeoutFrom ?? '--timeout'}); asking the ranks what they wait for`);
      void this.report().then(() => {
        if (this.tearingDown) return;
        const running = this.ranks.filter((r) => !r.exited).map((r) => r.rank);
        this.say(`ending ranks ${running.join(', ')} (timed out)`);
        this.teardown(124);
      });
    });
  }

  /** Every other host first (their agents start in parallel), then this one. */
  private async launch(): Promise<void> {
    const { plan } = this.o;
    const spec = (h: PlanHost, node: number): Omit<HostSpec, 'address' | 'stdin'> => ({
      jobId: this.jobId,
      node,
      size: plan.size,
      ranks: h.ranks.map((r) => ({ rank: r, domain: plan.ranks[r]!.domain })),
      command: this.o.command,
      env: this.o.exports,
      cwd: this.o.cwd,
      isolation: this.o.isolation,
      transport: this.o.transport,
      ringBytes: this.o.ringBytes,
      bindTo: this.o.bindTo,
      oversubscribe: this.o.oversubscribe,
      ranksAs: this.o.ranksAs,
    });
    const remotes: Array<Promise<{ head?: string }>> = [];
    let local: { host: PlanHost; node: number } | undefined;
    plan.hosts.forEach((h, node) => {
      const launcher = this.o.launcherFor(h);
      if (launcher === undefined) {
        local = { host: h, node };
        return;
      }
      const link = new RemoteHost(h.name, launcher, spec(h, node), this.events(h));
      this.attach(h, link);
      remotes.push(
        link.ready.catch((err: Error) => {
          this.hostFailed(h, err.message);
          return {};
        }),
      );
    });
    // The head's ranks listen where the other hosts can reach them.
    const seen = await Promise.all(remotes);
    if (local === undefined) return;
    const { host, node } = local;
    if (this.tearingDown) return this.hostFailed(host, 'not started: the job is ending');
    const address = remotes.length === 0 ? '127.0.0.1' : (seen.find((s) => s.head !== undefined)?.head ?? '127.0.0.1');
    try {
      const link = await LocalHost.start({ ...spec(host, node), env: this.o.env, address, stdin: true }, this.events(host));
      this.attach(host, link);
      if (this.tearingDown) link.kill('SIGKILL');
    } catch (err) {
      this.hostFailed(host, (err as Error).message);
    }
  }

  private attach(h: PlanHost, link: HostLink): void {
    this.hosts.push(link);
    for (const r of h.ranks) this.ranks[r]!.host = link;
  }

  private events(h: PlanHost): HostEvents {
    const of = (rank: number) => {
      const st = this.ranks[rank];
      // An agent speaks only for its own ranks; anything else is a broken agent, not a rank.
      return st !== undefined && h.ranks.includes(rank) ? st : undefined;
    };
    return {
      message: (rank, msg) => {
        const st = of(rank);
        if (st) this.onMessage(st, msg);
      },
      exit: (rank, code, signal) => {
        const st = of(rank);
        if (st && !st.exited) this.onExit(st, code, signal);
      },
      line: (rank, fd, text) => {
        const st = of(rank);
        if (st === undefined) return;
        if (fd === 2) {
          st.tail.push(text);
          if (st.tail.length > TAIL_LINES) st.tail.shift();
        }
        try {
          const line = (this.o.tagOutput ? `[${rank}] ` : '') + text;
          if (this.o.outputFiles !== undefined) this.o.outputFiles.line(rank, fd, line);
          else (fd === 1 ? process.stdout : process.stderr).write(line + '\n');
        } catch {
          // Our own stdout went away (e.g. piped into `head`); keep draining the rank.
        }
      },
      failed: (rank, why, code) => {
        const st = of(rank);
        if (st) this.fail(st, why, code);
      },
      lost: (why) => this.hostFailed(h, why),
    };
  }

  /** A host that could not start, or whose link broke: its ranks are gone with it. */
  private hostFailed(h: PlanHost, why: string): void {
    const lost = h.ranks.map((r) => this.ranks[r]!).filter((r) => !r.exited);
    if (lost.length === 0) return;
    if (!this.tearingDown) {
      const names = lost.length === 1 ? `rank ${lost[0]!.rank}` : `ranks ${lost[0]!.rank}-${lost[lost.length - 1]!.rank}`;
      this.say(`host ${h.name} (${names}): ${why}; ending the job`);
      this.teardown(1);
    }
    for (const r of lost) r.exited = true;
    for (const r of this.ranks) if (r.lostPeer !== undefined && lost.includes(r.lostPeer)) r.heldFailure?.();
    this.maybeFinish();
  }

  /** SIGINT/SIGTERM to ivrun: pass it on to every rank, then make sure they go. */
  /**
   * Asks every running rank what it waits for and prints the answers (ivrun: rank N: ...);
   * ranks that have not answered within REPORT_WAIT_MS are named as such. The job goes on.
   */
  report(): Promise<void> {
    const asked = this.ranks.filter((r) => !r.exited && r.host !== undefined);
    if (asked.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const pending = new Set(asked.map((r) => r.rank));
      const finish = () => {
        clearTimeout(timer);
        this.onReport = undefined;
        for (const r of pending) {
          const st = this.ranks[r]!;
          this.say(
            st.exited
              ? `rank ${r}: exited before it could answer`
              : st.hello === undefined
                ? `rank ${r}: has not joined the job (not yet in init(), or busy before it)`
                : `rank ${r}: did not answer within ${REPORT_WAIT_MS} ms (busy in synchronous code, or blocked outside ivcom)`,
          );
        }
        resolve();
      };
      const timer = setTimeout(finish, REPORT_WAIT_MS);
      this.onReport = (st, lines) => {
        if (!pending.delete(st.rank)) return;
        for (const l of lines.slice(0, MAX_REPORT_LINES)) this.say(String(l));
        if (pending.size === 0) finish();
      };
      for (const r of asked) r.host!.send(r.rank, { op: 'report' });
    });
  }

  /** Set while a report is being gathered. */
  private onReport: ((st: RankState, lines: string[]) => void) | undefined;

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
        if (this.ranks.every((r) => r.hello)) this.release();
        return;
      }
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
        if (Array.isArray(m.rings)) st.rings = new Set(m.rings.filter((r) => Number.isInteger(r)));
        this.announceFinished(st);
        return;
      case 'grant':
        return; // the host's agent serves grants; one never reaches the job
      case 'report':
        if (Array.isArray(m.lines)) this.onReport?.(st, m.lines);
        return;
    }
  }

  /** Everyone registered: the startup barrier opens and each rank learns its peers. */
  private release(): void {
    clearInterval(this.progressTimer);
    if (this.tearingDown) return;
    this.started = true;
    const peers: PeerInfo[] = this.o.plan.ranks.map((p) => ({
      host: this.ranks[p.rank]!.hello!.host,
      port: this.ranks[p.rank]!.hello!.port,
      node: p.node,
      domain: p.domain,
      pid: this.ranks[p.rank]!.hello!.pid,
    }));
    const start = new EncodedMessage<LauncherMessage>({
      op: 'start',
      jobId: this.jobId,
      size: this.o.plan.size,
      secret: this.secret.toString('base64'),
      transport: this.o.transport,
      ringBytes: this.o.ringBytes,
      singleCopy: this.o.singleCopy,
      hostSlots: this.o.hostSlots,
      peers,
    });
    for (const r of this.ranks) r.host?.send(r.rank, start);
  }

  /**
   * Tells every other running rank that `st` is done, so that what they wait for from it (a large
   * message announced to it, data it was to send) fails at once, naming it, instead of hanging.
   */
  private announceFinished(st: RankState): void {
    if (st.announced || !this.started || this.tearingDown) return;
    st.announced = true;
    for (const r of this.ranks) {
      if (r !== st && !r.exited) r.host?.send(r.rank, { op: 'finished', rank: st.rank, ring: st.rings?.has(r.rank) });
    }
  }

  private onExit(st: RankState, code: number | null, signal: NodeJS.Signals | null): void {
    st.exited = true;
    if (code === 0) this.announceFinished(st);
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
    this.maybeFinish();
  }

  private cause(st: RankState): string {
    if (st.abortReason) return ` (${st.abortReason})`;
    const line = [...st.tail].reverse().find((l) => /^\s*(\w*Error|Uncaught|\w*Exception)\b/.test(l));
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
    const where = this.o.plan.hosts.length > 1 ? ` on ${st.hostName}` : '';
    this.say(`rank ${st.rank}${where} ${why}; ending the job${running ? ` (stopping ${running} other rank${running > 1 ? 's' : ''})` : ''}`);
    // A rank that said it aborts is leaving by itself and may still be printing its error's
    // stack: a SIGTERM now would cut that off. The SIGKILL after the grace still covers it.
    this.teardown(code, 'SIGTERM', st.abortReason !== undefined && !st.exited ? st.rank : undefined);
  }

  private teardown(code: number, sig: NodeJS.Signals = 'SIGTERM', spare?: number): void {
    this.tearingDown = true;
    clearInterval(this.progressTimer);
    this.exitCode = code === 0 ? 1 : code;
    for (const h of this.hosts) h.kill(sig, spare);
    // Ranks get a moment to leave cleanly, then they are killed: the job must end within 1 s.
    this.killTimer = setTimeout(() => {
      this.killAll('SIGKILL');
      // A host that still has not reported its ranks' exits is not answering: cut it loose (its
      // agent kills its ranks when the link closes) rather than wait on it forever.
      this.silenceTimer = setTimeout(() => {
        for (const h of this.o.plan.hosts) {
          if (h.ranks.some((r) => !this.ranks[r]!.exited)) {
            this.ranks[h.ranks[0]!]!.host?.drop();
            this.hostFailed(h, `did not report its ranks' exits within ${HOST_SILENCE_MS} ms`);
          }
        }
      }, HOST_SILENCE_MS);
    }, this.o.killGraceMs ?? 400);
  }

  private killAll(sig: NodeJS.Signals): void {
    for (const h of this.hosts) h.kill(sig);
  }

  private maybeFinish(): void {
    if (!this.finishing && this.ranks.every((r) => r.exited)) void this.finish();
  }

  private async finish(): Promise<void> {
    this.finishing = true;
    // Every rank has exited; each host forwards its last lines and releases its domains and
    // grants (a remote agent then leaves, and so does its ssh or srun).
    await Promise.all(this.hosts.map((h) => h.finish()));
    clearTimeout(this.killTimer);
    clearTimeout(this.silenceTimer);
    this.cancelTimeout?.();
    clearInterval(this.progressTimer);
    this.o.outputFiles?.close();
    this.resolveDone(this.exitCode);
  }

  private say(msg: string): void {
    process.stderr.write(`ivrun: ${msg}\n`);
  }
}
