// `ivrun --ranks-as threads`: one process that runs a domain's ranks as worker threads of its own
// (started by the agent as `node [flags] thread-host.js script [args]`). A switch between threads
// of one process does not change address spaces, which is most of what a context switch costs
// when ranks outnumber cores (docs/performance.md); the price is the isolation of a process per
// rank (docs/decisions.md). The agent hands each rank its own fds: control, grant, stdout and
// stderr pipes. This host only starts the workers, carries their output to those pipes, prints an
// uncaught error on its rank's stderr, and tells the agent each rank's exit on the status fd, as
// a process per rank would by exiting. Everything dies with this one process.

import { writeSync } from 'node:fs';
import { Socket } from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import { Worker } from 'node:worker_threads';
import { THREAD_RANK_KEY } from '../transport/bootstrap/protocol.js';
import { STATUS_FD, THREAD_RANKS_ENV, type ThreadRank } from './thread-ranks.js';

function pipeOut(fd: number): Socket {
  return new Socket({ fd, readable: false, writable: true });
}

/** Copies `from` into `to` until `from` ends, leaving `to` open. */
function carry(from: Readable, to: Socket): Promise<void> {
  to.on('error', () => {}); // the agent is gone: the output has nowhere to go
  return new Promise((resolve) => {
    from.pipe(to, { end: false });
    from.once('end', resolve);
    from.once('error', () => resolve());
  });
}

function close(s: Socket): Promise<void> {
  return new Promise((resolve) => s.end(resolve));
}

async function runRank(r: ThreadRank, script: URL, args: string[], base: NodeJS.ProcessEnv): Promise<number> {
  const out = pipeOut(r.stdout);
  const err = pipeOut(r.stderr);
  const worker = new Worker(script, {
    argv: args,
    env: { ...base, ...r.env },
    workerData: { [THREAD_RANK_KEY]: r.rank },
    stdin: r.stdin,
    stdout: true,
    stderr: true,
  });
  if (r.stdin && worker.stdin !== null) {
    worker.stdin.on('error', () => {});
    process.stdin.pipe(worker.stdin);
  }
  const streams = Promise.all([carry(worker.stdout, out), carry(worker.stderr, err)]);
  let failure: unknown;
  worker.on('error', (e) => (failure = e));
  const code = await new Promise<number>((resolve) => worker.on('exit', resolve));
  await streams;
  // In a process Node would print the uncaught error itself; a worker hands it to its parent.
  if (failure !== undefined) err.write(`${inspect(failure)}\n`);
  await Promise.all([close(out), close(err)]);
  // After the output: the agent reports the exit once the rank's last lines are through.
  try {
    writeSync(STATUS_FD, `${r.rank} ${code}\n`);
  } catch {
    // the agent is gone: nobody to tell
  }
  return code;
}

async function main(): Promise<void> {
  const ranks = JSON.parse(process.env[THREAD_RANKS_ENV] ?? '[]') as ThreadRank[];
  const base = { ...process.env };
  delete base[THREAD_RANKS_ENV];
  const [script, ...args] = process.argv.slice(2);
  const url = pathToFileURL(path.resolve(script!));
  const codes = await Promise.all(ranks.map((r) => runRank(r, url, args, base)));
  process.stdin.unpipe();
  process.exitCode = codes.find((c) => c !== 0) ?? 0;
  process.stdin.destroy();
}

await main();
