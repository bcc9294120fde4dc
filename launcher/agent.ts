// The agent of one host: that host's dom0. It creates the host's domains, grants the channel
// memory between its co-resident ranks, spawns and watches them, and passes their messages,
// exits and output lines to the job (in the same process for the head's own host, over ssh or
// srun for the others). Policy — who failed, when the job ends — is the job's, not the agent's.

import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism, hostname } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { Socket } from 'node:net';
import {
  AGENT_PID_ENV,
  AGENT_SOCKET_ENV,
  attachProof,
  BOOTSTRAP_FD_ENV,
  GRANT_FD_ENV,
  HOST_CPUS_ENV,
  RANK_TOKEN_ENV,
  type AttachReply,
  type AttachRequest,
  EncodedMessage,
  readMessages,
  writeMessage,
  type LauncherMessage,
  type RankMessage,
} from '../transport/bootstrap/protocol.js';
import type { HostSpec } from './agent-protocol.js';
import { NetnsDomains } from './domains/netns.js';
import { forwardLines } from './output.js';
import { TIED } from './tie.js';
import { allocatorEnv } from './allocator.js';
import { withRankFlags, type HostLoad } from './v8-flags.js';
import { allowedCpus, bindPrefix, cpuPerRank } from './binding.js';
import { RankDoor } from './rank-door.js';
import { BUILD_HINT } from '../kmod/build-hint.js';
import { hostLimits, rankCost, whyNotFit } from './limits.js';
import { splitNodeCommand } from './program.js';
import { ownGroup } from './process-group.js';
import { STATUS_FD, THREAD_RANKS_ENV, threadRankFds, type ThreadRank } from './thread-ranks.js';

/** A rank's door token: 256 bits, never guessed. */
const TOKEN_BYTES = 32;

/** How long the output of a finished job may keep flowing from a descendant that left the group. */
const DRAIN_CAP_MS = 10_000;

/**
 * How long a thread host's last exit lines may take after the process ended: only a descendant
 * that inherited the status pipe holds it open longer, and the exits must not wait on that.
 */
const STATUS_DRAIN_MS = 1000;

const THREAD_HOST = path.join(path.dirname(fileURLToPath(import.meta.url)), 'thread-host.js');

/** A broker for channel grants (the shared-memory transport); absent → ranks use TCP only. */
export interface GrantBroker {
  /** The fd a rank's process should inherit to receive grants on, or undefined. */
  rankFd(rank: number): number | undefined;
  /** `from` asked for a channel to `to`. */
  request(from: number, to: number): void;
  /** `rank` asked for its host group (every rank of the host, one segment). */
  requestGroup(rank: number): void;
  /** Called after spawning: the launcher's copies of the rank ends can go. */
  spawned(rank: number): void;
  /**
   * A new grant channel for a rank that lost its inherited one (a wrapper closed it): the old
   * one is closed, and the rank's end of the new one returned (the caller hands it over, then
   * closes its copy).
   */
  reissue(rank: number): number | undefined;
  close(): void;
}

export interface AgentEvents {
  message(rank: number, msg: RankMessage): void;
  exit(rank: number, code: number | null, signal: NodeJS.Signals | null): void;
  line(rank: number, fd: 1 | 2, text: string): void;
  /** The agent found a rank at fault (could not start, broke the control protocol). */
  failed(rank: number, why: string, code: number): void;
}

interface LocalRank {
  rank: number;
  child: ChildProcess;
  ctl: Socket;
  /** Proves this rank to the door (rank-door.ts); spent once the rank has said hello. */
  token: string;
  tokenSpent: boolean;
  started: boolean;
  exited: boolean;
  streams: Promise<void>;
}

export class HostAgent {
  private readonly ranks = new Map<number, LocalRank>();

  private constructor(
    private readonly spec: HostSpec,
    private readonly events: AgentEvents,
    private readonly grants: GrantBroker | undefined,
    private readonly domains: NetnsDomains | undefined,
  ) {
    this.load = { ranks: spec.ranks.length, cores: availableParallelism() };
  }

  /** This host's ranks and cores: which V8 flags its node ranks get (v8-flags.ts). */
  private readonly load: HostLoad;

  /** Where a rank that a wrapper cut off from fds 3 and 4 comes back (absent without the addon). */
  private door: RankDoor | undefined;

  /** Creates the host's domains and grant broker, then spawns its ranks. */
  static async start(spec: HostSpec, events: AgentEvents): Promise<HostAgent> {
    // Refused before anything is made or spawned: a job that cannot fit fails whole, saying why.
    const tooMany = whyNotFit(spec.ranks.length, rankCost(spec.command), hostLimits(), hostname());
    if (tooMany !== undefined) throw new Error(`cannot start its ranks: ${tooMany}`);
    const grants = spec.transport === 'tcp' ? undefined : await grantBroker(spec);
    let domains: NetnsDomains | undefined;
    if (spec.isolation === 'netns') {
      try {
        domains = await NetnsDomains.create([...new Set(spec.ranks.map((r) => r.domain))]);
      } catch (err) {
        grants?.close();
        throw err;
      }
    }
    let cpus: number[] | undefined;
    try {
      if (spec.bindTo === 'core') cpus = cpuPerRank(allowedCpus(), spec.ranks.length, spec.oversubscribe === true, hostname());
    } catch (err) {
      grants?.close();
      domains?.close();
      throw err;
    }
    const agent = new HostAgent(spec, events, grants, domains);
    agent.door = await RankDoor.open(spec.jobId, spec.node, (req) => agent.admit(req));
    // A process per rank, or with --ranks-as threads one per domain.
    const groups: Array<{ ranks: number[]; domain: number; cpu?: number }> = [];
    for (const [i, r] of spec.ranks.entries()) {
      const g = spec.ranksAs === 'threads' ? groups.find((x) => x.domain === r.domain) : undefined;
      if (g !== undefined) g.ranks.push(r.rank);
      else groups.push({ ranks: [r.rank], domain: r.domain, cpu: cpus?.[i] });
    }
    for (const g of groups) {
      try {
        if (spec.ranksAs === 'threads') agent.spawnThreads(g.ranks, g.domain);
        else agent.spawnRank(g.ranks[0]!, g.domain, g.cpu);
      } catch (err) {
        // A limit the check above could not see (another program took the fds meanwhile): the
        // job ends naming it; the ranks already started are ended with it.
        const e = err as NodeJS.ErrnoException;
        events.failed(g.ranks[0]!, `could not be started: ${e.message}${e.code === 'EMFILE' ? ' (too many open files in ivrun: raise ulimit -n or run fewer ranks)' : ''}`, 1);
        break;
      }
    }
    return agent;
  }

  /** What a rank finds in its environment: who it is, where its fds are, how to come back. */
  private rankEnv(rank: number, domain: number, ctlFd: number, grantFd: number | undefined, token: string): Record<string, string> {
    const { spec } = this;
    const env: Record<string, string> = {
      IVCOM_RANK: String(rank),
      IVCOM_SIZE: String(spec.size),
      IVCOM_DOMAIN: String(domain),
      IVCOM_NODE: String(spec.node),
      IVCOM_JOBID: spec.jobId,
      IVCOM_HOST: this.domains?.vm(domain)?.address ?? spec.address,
      [BOOTSTRAP_FD_ENV]: String(ctlFd),
      [HOST_CPUS_ENV]: String(this.load.cores),
    };
    if (grantFd !== undefined) env[GRANT_FD_ENV] = String(grantFd);
    if (this.door !== undefined) {
      env[AGENT_SOCKET_ENV] = this.door.name;
      env[AGENT_PID_ENV] = String(process.pid);
      env[RANK_TOKEN_ENV] = token;
    }
    return env;
  }

  private spawnRank(rank: number, domain: number, cpu: number | undefined): void {
    const { spec } = this;
    const vm = this.domains?.vm(domain);
    // Tied to the agent (the runtime also leaves when its control channel closes). nsenter
    // execs, so the agent stays the parent that the tie refers to.
    const group = ownGroup();
    const [file, ...args] = [...(vm?.enter ?? []), ...TIED, ...group.prefix, ...(cpu === undefined ? [] : bindPrefix(cpu)), ...withRankFlags(spec.command, spec.env, this.load)];
    const grantFd = this.grants?.rankFd(rank);
    const stdio: Array<'pipe' | 'ignore' | number> = [rank === 0 && spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'];
    if (grantFd !== undefined) stdio.push(grantFd);
    const token = randomBytes(TOKEN_BYTES).toString('hex');
    const env = { ...allocatorEnv(spec.env), ...spec.env, ...this.rankEnv(rank, domain, 3, grantFd === undefined ? undefined : 4, token) };
    const child = spawn(file!, args, { stdio, env, cwd: spec.cwd, detached: group.detached });
    this.grants?.spawned(rank);
    const st = this.track(rank, child, child.stdio[3] as Socket, token);
    st.streams = Promise.all([
      forwardLines(child.stdout!, (text) => this.events.line(rank, 1, text)),
      forwardLines(child.stderr!, (text) => this.events.line(rank, 2, text)),
    ]).then(() => {});
    if (child.stdin) {
      child.stdin.on('error', () => {});
      if (!process.stdin.isTTY) process.stdin.pipe(child.stdin);
    }
    child.on('error', (err) => {
      this.events.failed(rank, `could not be started: ${err.message}. Is '${spec.command[0]}' on PATH?`, 127);
    });
    child.on('exit', (code, signal) => {
      st.exited = true;
      this.events.exit(rank, code, signal);
    });
    this.listen(st);
  }

  /**
   * --ranks-as threads: one process (thread-host.ts) runs the domain's ranks as worker threads,
   * each with the fds a process of its own would have (threadRankFds). The host says on the
   * status fd when each rank ends; the ranks it had not reported when it exits end with it.
   */
  private spawnThreads(ranks: number[], domain: number): void {
    const { spec } = this;
    const vm = this.domains?.vm(domain);
    const cmd = splitNodeCommand(spec.command);
    if (typeof cmd === 'string') throw new Error(cmd);
    const node = withRankFlags([cmd.node, ...cmd.flags], spec.env, this.load);
    const launch = ownGroup();
    const [file, ...args] = [...(vm?.enter ?? []), ...TIED, ...launch.prefix, ...node, THREAD_HOST, cmd.script, ...cmd.args];
    const withStdin = spec.stdin && ranks.includes(0);
    const stdio: Array<'pipe' | 'ignore' | number> = [withStdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'];
    const slots = ranks.map((rank, i) => {
      const fds = threadRankFds(i);
      const grantFd = this.grants?.rankFd(rank);
      stdio.push('pipe', grantFd ?? 'ignore', 'pipe', 'pipe');
      const token = randomBytes(TOKEN_BYTES).toString('hex');
      const env = this.rankEnv(rank, domain, fds.ctl, grantFd === undefined ? undefined : fds.grant, token);
      const told: ThreadRank = { rank, env, stdout: fds.stdout, stderr: fds.stderr, stdin: withStdin && rank === 0 };
      return { rank, fds, token, told };
    });
    const env = { ...allocatorEnv(spec.env), ...spec.env, [THREAD_RANKS_ENV]: JSON.stringify(slots.map((x) => x.told)) };
    const child = spawn(file!, args, { stdio, env, cwd: spec.cwd, detached: launch.detached });
    const group = slots.map(({ rank, fds, token }) => {
      this.grants?.spawned(rank);
      const st = this.track(rank, child, child.stdio[fds.ctl] as Socket, token);
      st.streams = Promise.all([
        forwardLines(child.stdio[fds.stdout] as Readable, (text) => this.events.line(rank, 1, text)),
        forwardLines(child.stdio[fds.stderr] as Readable, (text) => this.events.line(rank, 2, text)),
      ]).then(() => {});
      return st;
    });
    // The host's own output (Node's warnings about it) goes out as the first rank's.
    const first = ranks[0]!;
    const own = Promise.all([
      forwardLines(child.stdout!, (text) => this.events.line(first, 1, text)),
      forwardLines(child.stderr!, (text) => this.events.line(first, 2, text)),
    ]);
    group[0]!.streams = Promise.all([group[0]!.streams, own]).then(() => {});
    if (child.stdin) {
      child.stdin.on('error', () => {});
      if (!process.stdin.isTTY) process.stdin.pipe(child.stdin);
    }
    const ended = (rank: number, code: number | null, signal: NodeJS.Signals | null) => {
      const st = this.ranks.get(rank);
      if (st === undefined || st.exited || st.child !== child) return;
      st.exited = true;
      this.events.exit(rank, code, signal);
    };
    const statusDone = forwardLines(child.stdio[STATUS_FD] as Readable, (line) => {
      const [rank, code] = line.split(' ').map(Number);
      if (Number.isInteger(rank) && Number.isInteger(code)) ended(rank!, code!, null);
    });
    child.on('error', (err) => {
      this.events.failed(first, `could not be started: ${err.message}. Is '${cmd.node}' on PATH?`, 127);
    });
    child.on('exit', (code, signal) => {
      void Promise.race([statusDone, new Promise((r) => setTimeout(r, STATUS_DRAIN_MS).unref())]).then(() => {
        for (const rank of ranks) ended(rank, code, signal);
      });
    });
    for (const st of group) this.listen(st);
  }

  private track(rank: number, child: ChildProcess, ctl: Socket, token: string): LocalRank {
    const st: LocalRank = { rank, child, ctl, token, tokenSpent: false, started: false, exited: false, streams: Promise.resolve() };
    this.ranks.set(rank, st);
    return st;
  }

  private listen(st: LocalRank): void {
    st.ctl.on('error', () => {});
    readMessages<RankMessage>(
      st.ctl,
      (m) => this.onMessage(st, m),
      (line) => this.events.failed(st.rank, `broke the control protocol (sent ${JSON.stringify(line.slice(0, 60))})`, 1),
    );
  }

  /**
   * A rank asks at the door for new control and grant channels: its fds 3 and 4 were lost in a
   * wrapper. Only with its token, only before it has said hello, and only once.
   */
  private admit(req: AttachRequest): { reply: AttachReply; fds: number[] } {
    const no = (error: string) => ({ reply: { error }, fds: [] });
    const rank = typeof req === 'object' && req !== null ? req.rank : undefined;
    const st = typeof rank === 'number' ? this.ranks.get(rank) : undefined;
    if (st === undefined || typeof req.token !== 'string') return no(`no rank ${String(rank)} runs on this host`);
    const a = Buffer.from(req.token);
    const b = Buffer.from(st.token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return no(`wrong token for rank ${st.rank}`);
    if (st.tokenSpent || st.exited) return no(`rank ${st.rank} has already joined the job`);
    st.tokenSpent = true;
    const [mine, theirs] = this.door!.streamPair();
    const old = st.ctl;
    st.ctl = new Socket({ fd: mine, readable: true, writable: true });
    old.destroy(); // the wrapper holds the other end; nothing more comes from it
    this.listen(st);
    const grant = this.grants?.reissue(st.rank);
    return { reply: { proof: attachProof(st.token, st.rank), grant: grant !== undefined }, fds: grant === undefined ? [theirs] : [theirs, grant] };
  }

  private onMessage(st: LocalRank, m: RankMessage): void {
    if (m.op === 'hello') st.tokenSpent = true;
    if (m.op === 'group') {
      if (!st.started) this.events.failed(st.rank, 'asked for its host group before the job started', 1);
      else if (!this.grants) this.events.failed(st.rank, 'asked for its host group but this ivrun has no grant broker', 1);
      else this.grants.requestGroup(st.rank);
      return;
    }
    if (m.op !== 'grant') {
      this.events.message(st.rank, m);
      return;
    }
    // Grants are this host's business: the memory never leaves it.
    const peer = m.peer;
    if (!st.started || !Number.isInteger(peer) || peer < 0 || peer >= this.spec.size || peer === st.rank) {
      this.events.failed(st.rank, `asked for a channel to invalid rank ${peer}`, 1);
    } else if (!this.grants) {
      this.events.failed(st.rank, 'asked for a shared-memory channel but this ivrun has no grant broker', 1);
    } else this.grants.request(st.rank, peer);
  }

  send(rank: number, msg: LauncherMessage | EncodedMessage): void {
    const st = this.ranks.get(rank);
    if (st === undefined) return;
    if ((msg instanceof EncodedMessage ? msg.msg : msg).op === 'start') st.started = true;
    writeMessage(st.ctl, msg);
  }

  /**
   * Signals every rank still running (but `spare`), with its whole process group: once per
   * process, and not the process that `spare` runs in (with --ranks-as threads it hosts others).
   */
  kill(signal: NodeJS.Signals, spare?: number): void {
    const keep = spare === undefined ? undefined : this.ranks.get(spare)?.child;
    for (const child of this.processes((r) => !r.exited && r.child !== keep)) {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      }
    }
  }

  /** The rank processes (a thread host once for all its ranks) of the ranks that `which` picks. */
  private processes(which: (r: LocalRank) => boolean = () => true): Set<ChildProcess> {
    const found = new Set<ChildProcess>();
    for (const r of this.ranks.values()) if (r.child.pid !== undefined && which(r)) found.add(r.child);
    return found;
  }

  /** Every rank has exited: end what they left behind, forward the last lines, release all. */
  async finish(): Promise<void> {
    // Nothing outlives the job: whatever is left in a rank's process group goes now, and then
    // nothing else holds the output pipes open.
    for (const child of this.processes()) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // no group left: the normal case
      }
    }
    // The pipes close once the kernel has reaped those processes; the cap only guards against
    // a descendant that left the group (setsid).
    const streams = Promise.all([...this.ranks.values()].map((r) => r.streams));
    await Promise.race([streams, new Promise((r) => setTimeout(r, DRAIN_CAP_MS).unref())]);
    this.door?.close();
    this.grants?.close();
    this.domains?.close();
    process.stdin.unpipe();
  }
}

async function grantBroker(spec: HostSpec): Promise<GrantBroker | undefined> {
  let broker: typeof import('./grants.js');
  try {
    broker = await import('./grants.js');
  } catch (err) {
    // Without the native addon there is no shared memory to grant. That is an error only when
    // shared memory was demanded; otherwise every pair uses TCP and transportTo says so.
    if (spec.transport === 'ivcom') {
      throw new Error(`--transport ivcom needs the native addon, which failed to load (${(err as Error).message}); ${BUILD_HINT}, or use --transport tcp`);
    }
    if (spec.transport === 'auto' && spec.ranks.length > 1) {
      // Once per host and job: its ranks still run, slower, and the user should know why.
      process.stderr.write(`ivrun: the shared-memory fast path is not built here, so ranks on one host talk over TCP; ${BUILD_HINT}\n`);
    }
    return undefined;
  }
  // The addon is there: a failure from here on is the host's (no fds, no memory), said as such.
  return new broker.KmodGrantBroker(spec.ranks.map((r) => r.rank), spec.jobId, spec.ringBytes);
}
