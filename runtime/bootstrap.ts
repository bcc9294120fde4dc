// The rank's side of the control channel to ivrun: register, learn the peers and the job
// secret, pass the startup barrier, ask for grants, report an abort.

import { writeSync } from 'node:fs';
import net from 'node:net';
import {
  BOOTSTRAP_FD_ENV,
  readMessages,
  writeMessage,
  type LauncherMessage,
  type RankMessage,
} from '../transport/bootstrap/protocol.js';
import { BootstrapError } from './errors.js';

export type StartInfo = Extract<LauncherMessage, { op: 'start' }>;

export class BootstrapClient {
  private readonly sock: net.Socket;
  private start: Promise<StartInfo>;
  private lost = false;

  private constructor(
    readonly rank: number,
    private readonly fd: number,
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
          else if (m.op === 'finished') this.peerFinished(m.rank);
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

  /** Set when this process is finishing on purpose, so a closing channel is expected. */
  static leaving = false;

  private readonly finished = new Set<number>();
  private onFinished: ((rank: number) => void) | undefined;

  /** Calls `f` for every rank ivrun says finished (finalized or exited 0), those so far included. */
  onPeerFinished(f: (rank: number) => void): void {
    this.onFinished = f;
    for (const r of this.finished) f(r);
  }

  private peerFinished(rank: unknown): void {
    if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 0 || this.finished.has(rank)) return;
    this.finished.add(rank);
    this.onFinished?.(rank);
  }

  static fromEnv(): BootstrapClient | undefined {
    const fdText = process.env[BOOTSTRAP_FD_ENV];
    const rankText = process.env.IVCOM_RANK;
    if (fdText === undefined) {
      notStartedBySrun(process.env);
      return undefined;
    }
    const fd = Number(fdText);
    const rank = Number(rankText);
    if (!Number.isInteger(fd) || fd < 0 || !Number.isInteger(rank) || rank < 0) {
      throw new BootstrapError(
        `${BOOTSTRAP_FD_ENV}=${fdText} IVCOM_RANK=${rankText} are not valid; start the program with ivrun (or unset ${BOOTSTRAP_FD_ENV} to run alone)`,
      );
    }
    return new BootstrapClient(rank, fd);
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
