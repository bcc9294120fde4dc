// The control protocol between ivrun (the grant authority, like Xen's dom0) and its ranks.
// It runs over a private Unix stream socket that ivrun hands every rank as an inherited file
// descriptor: no path on disk to leak or to guess, and only the rank's process tree holds it.
// Messages are JSON lines. The job secret travels only here: never in argv, env or logs.

import { createHmac } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';

export const BOOTSTRAP_FD_ENV = 'IVCOM_BOOTSTRAP_FD';
export const GRANT_FD_ENV = 'IVCOM_GRANT_FD';

// A wrapper between ivrun and the rank (npm, npx, tsx: Node marks every inherited fd
// close-on-exec) loses those fds. What it passes on is the environment, so that says where the
// host's agent takes a rank back (an abstract AF_UNIX name: nothing on disk), which process
// started the rank (a rank whose parent is another one was wrapped), and a one-use token that
// proves which rank is asking; the agent proves itself back with an HMAC of that token.
export const AGENT_SOCKET_ENV = 'IVCOM_AGENT_SOCKET';
export const AGENT_PID_ENV = 'IVCOM_AGENT_PID';
export const RANK_TOKEN_ENV = 'IVCOM_RANK_TOKEN';

// The CPUs the job may use on the rank's host, as ivrun counts them (before `--bind-to core`
// narrows each rank's own affinity to one): whether the host's ranks outnumber its cores is
// judged by this, not by what the bound rank sees.
export const HOST_CPUS_ENV = 'IVCOM_HOST_CPUS';

// `ivrun --ranks-as threads`: a domain's ranks run as worker threads of one process (the thread
// host, launcher/thread-host.ts). The host starts each with its rank under this key of
// workerData: that worker is a rank of its own, with its own control and grant fds in the
// process it shares. (Not the environment: a worker the program starts inherits that.)
export const THREAD_RANK_KEY = 'ivcomThreadRank';

/** Rank → agent, one datagram on the agent's socket. */
export interface AttachRequest {
  rank: number;
  token: string;
}

/** Agent → rank: with `proof`, the fds: the control channel, then the grant channel when `grant`. */
export type AttachReply = { proof: string; grant: boolean } | { error: string };

/** What only the agent that issued `token` can answer. */
export function attachProof(token: string, rank: number): string {
  return createHmac('sha256', token).update(`ivrun agent for rank ${rank}`).digest('hex');
}

export interface PeerInfo {
  /** Address and port of the peer's TCP listener. */
  host: string;
  port: number;
  /** Index of the host (physical machine) the rank runs on. */
  node: number;
  /** Index of the co-resident domain ("VM") the rank runs in. */
  domain: number;
  /** The rank's process id on its host (as it registered it); for single copy between co-resident ranks. */
  pid: number;
}

export type TransportMode = 'auto' | 'tcp' | 'ivcom';

/** Rank → ivrun. */
export type RankMessage =
  | { op: 'hello'; rank: number; pid: number; host: string; port: number }
  | { op: 'grant'; peer: number }
  /** The host group's segment and doorbells (transport/ivcom/group.ts). */
  | { op: 'group' }
  /** `lostPeer`: the rank failed because that peer vanished, so that peer's own end is the cause. */
  | { op: 'abort'; code: number; reason: string; lostPeer?: number }
  /** `rings`: the peers this rank shared a ring with; each saw it closed after its last message. */
  | { op: 'finalize'; rings?: number[] }
  /** The answer to `report`: what the rank waits for, one line each. */
  | { op: 'report'; lines: string[] };

/** ivrun → rank. */
export type LauncherMessage =
  | {
      op: 'start';
      jobId: string;
      size: number;
      /** base64; proves membership in the job to peers (HMAC challenge-response). */
      secret: string;
      transport: TransportMode;
      ringBytes: number;
      /** Large messages between ranks of one host may be copied process to process. */
      singleCopy: boolean;
      /** The world communicator's small collectives meet in the host group (ivrun --host-slots). */
      hostSlots: boolean;
      peers: PeerInfo[];
    }
  | { op: 'error'; message: string }
  /** A rank finalized or exited 0: nothing more comes from it, nothing more is received by it. */
  /**
   * `ring`: whether that rank had a shared-memory ring with this one (then its closing travels
   * in the ring, in order after its messages, and that is what ends waiting on it here); absent:
   * not known (it exited without finalize()).
   */
  | { op: 'finished'; rank: number; ring?: boolean }
  /** Say what you are waiting for (--timeout, SIGUSR1 to ivrun). */
  | { op: 'report' };

/** Splits a stream into JSON messages, one per line; a malformed line is reported, not thrown. */
export function readMessages<T>(stream: Readable, onMessage: (m: T) => void, onBad: (line: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.length === 0) continue;
      let msg: T;
      try {
        msg = JSON.parse(line) as T;
      } catch {
        onBad(line);
        continue;
      }
      onMessage(msg);
    }
  });
}

/**
 * A message encoded once for many receivers: the start message carries the whole peer table,
 * so encoding it for each of n ranks would cost n² work at startup.
 */
export class EncodedMessage<T = LauncherMessage> {
  readonly json: string;
  constructor(readonly msg: T) {
    this.json = JSON.stringify(msg);
  }
}

/** Writes one message as a JSON line; the launcher's agent protocol uses the same framing. */
export function writeMessage<T = RankMessage | LauncherMessage>(stream: Writable, msg: T | EncodedMessage<T>): boolean {
  return stream.write((msg instanceof EncodedMessage ? msg.json : JSON.stringify(msg)) + '\n');
}
