// The public entry point of the `ivcom` package (see shared/API.md).

import { BootstrapClient } from './bootstrap.js';
import { useNativeKernels, type NativeReduce } from './collectives/op.js';
import { Comm } from './comm.js';
import { Engine } from './engine.js';
import { TcpTransport } from '../transport/tcp/transport.js';
import { CrossMemory } from '../transport/cma.js';
import type { PeerInfo } from '../transport/bootstrap/protocol.js';
import type { Transport, Upcalls } from '../transport/transport.js';
import type { StartInfo } from './bootstrap.js';
import { crc32cJs, verifyFromEnv, verifyingUpcalls } from './verify.js';

export { ANY_SOURCE, ANY_TAG, PROC_NULL, TAG_UB } from './constants.js';
export { Comm } from './comm.js';
export { Op } from './collectives/op.js';
export type { OpLike } from './collectives/op.js';
export type { Status, Message } from './receive.js';
export type { MatchedMessage } from './matched.js';
export * from './errors.js';

let world: Promise<Comm> | undefined;
let engine: Engine | undefined;

/**
 * Joins the job and returns the world communicator. Under ivrun it registers with the launcher
 * and waits for every rank (the startup barrier); outside ivrun the world is this process alone.
 * Calling it again returns the same communicator.
 */
export function init(): Promise<Comm> {
  if (world === undefined) {
    // Every handle the runtime owns is unref'd (an idle rank may exit); hold the loop open
    // while the startup barrier is pending.
    const keep = setInterval(() => {}, 1 << 30);
    world = start().finally(() => clearInterval(keep));
  }
  return world;
}

async function start(): Promise<Comm> {
  // Native reduction kernels when the addon is built (the JS ones otherwise: same results).
  const kmod = await import('../kmod/index.js').catch(() => undefined);
  if (kmod !== undefined) useNativeKernels(kmod.reduceInto as NativeReduce);
  const bootstrap = await BootstrapClient.fromEnv();
  if (bootstrap === undefined) {
    const peers: PeerInfo[] = [{ host: '127.0.0.1', port: 0, node: 0, domain: 0, pid: process.pid }];
    engine = new Engine({ rank: 0, size: 1, peers, mode: 'auto' });
  } else {
    const rank = bootstrap.rank;
    // Tell ivrun why this rank is going down before Node prints the stack and exits, so it can
    // end the job at once and name the cause.
    process.on('uncaughtExceptionMonitor', (err) => {
      BootstrapClient.leaving = true;
      const e = err as { code?: string; peer?: number } | undefined;
      bootstrap.sendNow({
        op: 'abort',
        code: 1,
        reason: `uncaught ${err?.name ?? 'error'}: ${err?.message ?? String(err)}`,
        lostPeer: e?.code === 'ERR_IVCOM_PEER_LOST' && typeof e.peer === 'number' ? e.peer : undefined,
      });
    });
    // Nothing can arrive before the engine exists: peers learn this rank's address only from
    // the launcher's start message, which comes after the engine is built below.
    const direct: Upcalls = {
      deliver: (m) => engine!.arrive(m),
      fail: (e) => engine!.fail(e),
      peerClosed: (peer) => engine!.peerClosed(peer),
      allocate: (h) => engine!.allocate(h),
      stage: (h) => engine!.stage(h),
    };
    // ivrun --verify exports IVCOM_VERIFY=1 to every rank: all check, or none.
    const verify = verifyFromEnv(process.env.IVCOM_VERIFY, rank) ? (kmod?.crc32c ?? crc32cJs) : undefined;
    const upcalls = verify === undefined ? direct : verifyingUpcalls(direct, verify, rank);
    const host = process.env.IVCOM_HOST ?? '127.0.0.1';
    const tcp = new TcpTransport({ rank, upcalls, host });
    const addr = await tcp.listen();
    const info = await bootstrap.register(addr.host, addr.port);
    const ivcom = info.transport === 'tcp' ? undefined : await sharedMemory(rank, info, bootstrap, upcalls);
    // Single copy only where the ring goes too: same host, granted shared memory.
    const cma =
      ivcom !== undefined && kmod !== undefined && info.singleCopy
        ? new CrossMemory(kmod, (peer) => (engine!.transportName(peer) === 'ivcom' ? info.peers[peer]?.pid : undefined))
        : undefined;
    engine = new Engine({ rank, size: info.size, peers: info.peers, mode: info.transport, bootstrap, tcp, ivcom, cma, verify, hostSlots: info.hostSlots });
    bootstrap.onPeerFinished((peer, ring) => engine!.peerFinished(peer, ring));
    bootstrap.reporter = () => engine!.report();
    tcp.join(Buffer.from(info.secret, 'base64'), info.peers);
  }
  const e = engine;
  process.once('beforeExit', () => {
    void e.finalize();
  });
  return new Comm(e, 0, Array.from({ length: e.size }, (_, i) => i));
}

/**
 * The shared-memory transport, when ivrun granted this rank a grant channel and the native addon
 * loads. Loaded on demand so that a build without the addon still runs over TCP.
 */
async function sharedMemory(
  rank: number,
  info: StartInfo,
  bootstrap: BootstrapClient,
  upcalls: Upcalls,
): Promise<Transport | undefined> {
  const grantFd = bootstrap.grantFd;
  if (grantFd === undefined) return undefined;
  let mods;
  try {
    const [kmod, ivcom, client] = await Promise.all([
      import('../kmod/index.js'),
      import('../transport/ivcom/transport.js'),
      import('../transport/ivcom/grant-client.js'),
    ]);
    mods = { kmod, ivcom, client };
  } catch {
    return undefined; // transportTo reports tcp; a forced --transport ivcom fails on first use
  }
  const grants = new mods.client.GrantClient(
    grantFd,
    info.size,
    (peer) => bootstrap.send({ op: 'grant', peer }),
    upcalls.fail,
    () => bootstrap.send({ op: 'group' }),
  );
  return new mods.ivcom.IvcomTransport({
    rank,
    grants,
    upcalls,
    kmod: mods.kmod,
    ringBytes: info.ringBytes,
    // A posted receive's buffer, else reusable staging memory: no fresh pages per large message.
    allocate: (h) => upcalls.allocate!(h) ?? upcalls.stage!(h),
  });
}

/** Flushes outstanding sends, closes every channel and leaves the job. Idempotent. */
export async function finalize(): Promise<void> {
  if (world === undefined) return;
  await world;
  await engine!.finalize();
}
