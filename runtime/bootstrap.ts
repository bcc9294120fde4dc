// The rank's side of the control channel to ivrun: register, learn the peers and the job
// secret, pass the startup barrier, ask for grants, report an abort.

import { timingSafeEqual } from 'node:crypto';
import { writeSync } from 'node:fs';
import net from 'node:net';
import { isMainThread, workerData } from 'node:worker_threads';
import {
  AGENT_PID_ENV,
  AGENT_SOCKET_ENV,
  attachProof,
  BOOTSTRAP_FD_ENV,
  GRANT_FD_ENV,
  RANK_TOKEN_ENV,
  THREAD_RANK_KEY,
  type AttachReply,
  readMessages,
  writeMessage,
  type LauncherMessage,
  type RankMessage,
} from '../transport/bootstrap/protocol.js';
import { BootstrapError, StateError } from './errors.js';

export type StartInfo = Extract<LauncherMessage, { op: 'start' }>;

export class BootstrapClient {
  private readonly sock: net.Socket;
  private start: Promise<StartInfo>;
  private lost = false;

  private constructor(
    readonly rank: number,
    private readonly fd: number,
    /** The grant channel (shared memory), when ivrun gave this rank one. */
    readonly grantFd: number | undefined,
  ) {
    this.sock = new net.Socket({ fd, readable: true, writable: true });
    // The channel must not keep a finished rank alive; the runtime holds the loop open itself
    // while it has work.
    this.sock.unref();
    this.start = new Promise((resolve, reject) => {
      readMessages<LauncherMessage>(
        this.sock,
        (m) => {
          if (m.op === 'start') resolve(m);
          else if (m.op === 'finished') this.peerFinished(m.rank, m.ring);
          else if (m.op === 'report') this.send({ op: 'report', lines: this.reporter() });
          else if (m.op === 'error') reject(new BootstrapError(`rank ${rank}: ivrun refused: ${m.message}`, { rank }));
        },
        (line) => reject(new BootstrapError(`rank ${rank}: ivrun sent a malformed line: ${line.slice(0, 80)}`, { rank })),
      );
      this.sock.on('error', (e) => reject(new BootstrapError(`rank ${rank}: control channel to ivrun failed: ${e.message}`, { rank, cause: e })));
    });
    this.sock.on('close', () => {
      // ivrun is gone (killed, or the job is being torn down): a rank must never outlive its
      // job, so leave now rather than wait on peers that will not come.
      this.lost = true;
      if (!BootstrapClient.leaving) process.exit(1);
    });
  }

  /** What this rank waits for (report.ts); until the engine exists, the startup barrier. */
  reporter: () => string[] = () => [`rank ${this.rank}: in init(), waiting for every rank of the job to start`];

  /** Set when this process is finishing on purpose, so a closing channel is expected. */
  static leaving = false;

  private readonly finished = new Map<number, boolean | undefined>();
  private onFinished: ((rank: number, ring: boolean | undefined) => void) | undefined;

  /**
   * Calls `f` for every rank ivrun says finished (finalized or exited 0), those so far included,
   * with whether it had a shared-memory ring with this rank (undefined: not known).
   */
  onPeerFinished(f: (rank: number, ring: boolean | undefined) => void): void {
    this.onFinished = f;
    for (const [r, ring] of this.finished) f(r, ring);
  }

  private peerFinished(rank: unknown, ring: unknown): void {
    if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 0 || this.finished.has(rank)) return;
    const r = typeof ring === 'boolean' ? ring : undefined;
    this.finished.set(rank, r);
    this.onFinished?.(rank, r);
  }

  static async fromEnv(): Promise<BootstrapClient | undefined> {
    const env = process.env;
    const fdText = env[BOOTSTRAP_FD_ENV];
    const rankText = env.IVCOM_RANK;
    if (fdText === undefined) {
      notStartedBySrun(env);
      return undefined;
    }
    const fd = Number(fdText);
    const rank = Number(rankText);
    if (!Number.isInteger(fd) || fd < 0 || !Number.isInteger(rank) || rank < 0) {
      throw new BootstrapError(
        `${BOOTSTRAP_FD_ENV}=${fdText} IVCOM_RANK=${rankText} are not valid; start the program with ivrun (or unset ${BOOTSTRAP_FD_ENV} to run alone)`,
      );
    }
    if (!isMainThread && (workerData as Record<string, unknown> | null)?.[THREAD_RANK_KEY] !== rank) {
      // The worker shares the process's environment and fds: it would register as the same
      // rank a second time. (Under --ranks-as threads the thread host gives each worker a rank
      // of its own, and says so in the worker's workerData.)
      throw new StateError(
        `rank ${rank}: init() was called in a worker thread; a rank is a process: call init() in the main thread and give workers their work (and results) with postMessage (or start the ranks themselves as threads: ivrun --ranks-as threads)`,
        { rank },
      );
    }
    const grantText = env[GRANT_FD_ENV];
    const agentPid = Number(env[AGENT_PID_ENV]);
    if (env[AGENT_SOCKET_ENV] !== undefined && process.ppid !== agentPid) {
      // Not started by the agent itself: a wrapper (npm, npx, tsx...) stands between, and
      // Node-based ones close every inherited fd. Find the agent again through the environment.
      const fds = await reattach(rank, agentPid, env);
      return new BootstrapClient(rank, fds.ctl, fds.grant);
    }
    return new BootstrapClient(rank, fd, grantText === undefined ? undefined : Number(grantText));
  }

  /** Registers this rank's address and waits until every rank has (the startup barrier). */
  async register(host: string, port: number): Promise<StartInfo> {
    this.send({ op: 'hello', rank: this.rank, pid: process.pid, host, port });
    return this.start;
  }

  send(msg: RankMessage): void {
    if (!this.lost) writeMessage(this.sock, msg);
  }

  /**
   * For the moments when the process is about to end (abort, uncaught error): a plain write
   * that completes before exit, where a stream write might still be queued.
   */
  sendNow(msg: RankMessage): void {
    if (this.lost) return;
    try {
      writeSync(this.fd, JSON.stringify(msg) + '\n');
    } catch {
      // The launcher is already gone; there is nobody left to tell.
    }
  }

  close(): void {
    BootstrapClient.leaving = true;
    this.sock.end();
  }
}

/** How long a rank waits for its agent to answer at the door (it answers at once). */
const ATTACH_TIMEOUT_MS = 10_000;

/**
 * Asks the host's agent, at the socket the environment names, for this rank's control (and
 * grant) channel again, proving the rank with its token; checks the agent's proof in turn.
 */
async function reattach(rank: number, agentPid: number, env: NodeJS.ProcessEnv): Promise<{ ctl: number; grant: number | undefined }> {
  const wrapped = `rank ${rank} was started through a wrapper (its parent is pid ${process.ppid}, not ivrun's agent ${agentPid}), which closed the channels ivrun passed it`;
  const fail = (why: string, cause?: unknown) =>
    new BootstrapError(`${wrapped}; ${why}. Or start node directly: ivrun -n N node [--import tsx] app.js`, { rank, cause });
  let kmod: typeof import('../kmod/index.js');
  try {
    kmod = await import('../kmod/index.js');
  } catch (cause) {
    throw fail(`finding ivrun again needs the native addon, which did not load (${(cause as Error)?.message}): rebuild it (npm rebuild ivcom)`, cause);
  }
  let sock: number;
  try {
    sock = kmod.unixConnect(env[AGENT_SOCKET_ENV]!);
  } catch (cause) {
    throw fail(
      `ivrun's agent cannot be reached at its socket (${(cause as Error)?.message}; inside --isolation netns VMs it is out of reach)`,
      cause,
    );
  }
  const token = env[RANK_TOKEN_ENV] ?? '';
  let m: import('../kmod/index.js').ReceivedGrant;
  try {
    kmod.sendFds(sock, [], Buffer.from(JSON.stringify({ rank, token })));
    m = await new Promise((resolve, reject) => {
      const w = new kmod.FdWatcher(sock, () => {
        let r: import('../kmod/index.js').ReceivedGrant | null;
        try {
          r = kmod.recvFds(sock);
        } catch (err) {
          done();
          reject(err as Error);
          return;
        }
        if (r === null) return;
        done();
        resolve(r);
      });
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no answer within ${ATTACH_TIMEOUT_MS / 1000} s`));
      }, ATTACH_TIMEOUT_MS);
      const done = () => {
        clearTimeout(timer);
        w.close();
      };
      w.start();
    });
  } catch (cause) {
    throw fail(`asking ivrun's agent failed (${(cause as Error)?.message})`, cause);
  } finally {
    kmod.closeFd(sock);
  }
  const drop = () => m.fds.forEach((fd) => kmod.closeFd(fd));
  let reply: AttachReply;
  try {
    reply = JSON.parse(m.data.toString('utf8')) as AttachReply;
  } catch {
    drop();
    throw fail(m.eof ? "ivrun's agent closed the connection without an answer" : "ivrun's agent answered with something that is not JSON");
  }
  if ('error' in reply) {
    drop();
    throw fail(`ivrun's agent refused: ${reply.error}`);
  }
  const want = attachProof(token, rank);
  const proof = Buffer.from(String(reply.proof));
  if (proof.length !== want.length || !timingSafeEqual(proof, Buffer.from(want)) || m.fds.length !== (reply.grant ? 2 : 1)) {
    drop();
    throw fail('what answered at the socket could not prove it is ivrun');
  }
  // The wrapper is tied to ivrun; tie this process to the wrapper, so that ivrun's death (even
  // by SIGKILL) still ends it down the chain.
  if (!kmod.dieWithParent()) process.exit(1);
  return { ctl: m.fds[0]!, grant: reply.grant ? m.fds[1] : undefined };
}

/**
 * `srun -n 4 node app.js` starts four processes that each see no launcher: alone, each would be a
 * world of size 1 and the job would silently compute four times over. Refuse instead.
 */
function notStartedBySrun(env: NodeJS.ProcessEnv): void {
  const tasks = Number(env.SLURM_STEP_NUM_TASKS ?? env.SLURM_NTASKS);
  if (env.SLURM_PROCID === undefined || !(tasks > 1)) return;
  throw new BootstrapError(
    `this process is task ${env.SLURM_PROCID} of ${tasks} started by srun, not a rank of an ivrun job: each task would be a world of size 1. ` +
      `Inside the allocation run 'ivrun node app.js' (it takes the ranks and nodes from Slurm) instead of 'srun node app.js'`,
    { rank: Number(env.SLURM_PROCID) },
  );
}
