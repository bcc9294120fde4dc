// The public entry point of the `ivcom` package (see shared/API.md).

import { BootstrapClient } from './bootstrap.js';
import { Comm } from './comm.js';
import { Engine } from './engine.js';
import { TcpTransport } from '../transport/tcp/transport.js';
import type { PeerInfo } from '../transport/bootstrap/protocol.js';

export { ANY_SOURCE, ANY_TAG, TAG_UB } from './constants.js';
export { Comm } from './comm.js';
export type { Status, Message } from './comm.js';
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
  const bootstrap = BootstrapClient.fromEnv();
  if (bootstrap === undefined) {
    const peers: PeerInfo[] = [{ host: '127.0.0.1', port: 0, node: 0, domain: 0 }];
    engine = new Engine({ rank: 0, size: 1, peers, mode: 'auto' });
  } else {
    const rank = bootstrap.rank;
    // Tell ivrun why this rank is going down before Node prints the stack and exits, so it can
    // end the job at once and name the cause.
    process.on('uncaughtExceptionMonitor', (err) => {
      BootstrapClient.leaving = true;
      bootstrap.sendNow({ op: 'abort', code: 1, reason: `uncaught ${err?.name ?? 'error'}: ${err?.message ?? String(err)}` });
    });
    // Nothing can arrive before the engine exists: peers learn this rank's address only from
    // the launcher's start message, which comes after the engine is built below.
    const upcalls = {
      deliver: (m: Parameters<Engine['arrive']>[0]) => engine!.arrive(m),
      fail: (e: Error) => engine!.fail(e),
    };
    const host = process.env.IVCOM_HOST ?? '127.0.0.1';
    const tcp = new TcpTransport({ rank, upcalls, host });
    const addr = await tcp.listen();
    const info = await bootstrap.register(addr.host, addr.port);
    engine = new Engine({ rank, size: info.size, peers: info.peers, mode: info.transport, bootstrap, tcp });
    tcp.join(Buffer.from(info.secret, 'base64'), info.peers);
  }
  const e = engine;
  process.once('beforeExit', () => {
    void e.finalize();
  });
  return new Comm(e, 0, Array.from({ length: e.size }, (_, i) => i));
}

/** Flushes outstanding sends, closes every channel and leaves the job. Idempotent. */
export async function finalize(): Promise<void> {
  if (world === undefined) return;
  await world;
  await engine!.finalize();
}
