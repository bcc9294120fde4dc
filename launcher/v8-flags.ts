// The V8 flags ivrun gives Node ranks, where V8's defaults misjudge a process that passes messages
// while its peers spin on the other cores. They go on the command line right after the node
// binary (Node refuses both in NODE_OPTIONS); a flag of the user's own on the same matter, on the
// command line or in NODE_OPTIONS, wins.
//
// - The young generation at V8's default maximum from the start (`--min-semi-space-size=16`). A
//   rank drops small objects at a steady rate (receives, promises, decoded values) and keeps few;
//   V8 starts each semi-space at 1 MiB and grows it only when much survives, so such a rank
//   scavenged every megabyte or so, and every scavenge woke V8's helper threads, which then took
//   the cores from the spinning ranks (docs/launcher.md). A scavenge costs by what survives, not
//   by the space's size; the price is address space, and memory only as far as the program
//   allocates.
// - The optimizing compiler and the garbage collector on the rank's own thread
//   (`--no-concurrent-recompilation --single-threaded-gc`) when the host's ranks take every core.
//   V8 compiles hot functions, marks, sweeps and frees pages on helper threads; with no core to
//   spare, a helper's job preempts a rank, and the peer waiting for that rank spins through the
//   rest of its time slice: a tail of steps taking milliseconds (docs/performance.md, stop 26).
//   On the rank's thread the same work costs the rank, once, what it costs the pair at every
//   preemption. With a core to spare the helper threads run there, and V8's defaults stay.

import { isNodeBinary } from './program.js';

/** MiB per semi-space: V8's default maximum on 64-bit hosts, so the space starts where it may grow to. */
export const YOUNG_SEMI_SPACE_MB = 16;
const SEMI_SPACE_FLAG = /--(?:min|max)[-_]semi[-_]space[-_]size|--semi[-_]space[-_]growth[-_]factor/;
/** With every core taken by a rank: V8's helper threads' work, each flag unless the user chose on the matter. */
const FULL_HOST_FLAGS: ReadonlyArray<readonly [flag: string, users: RegExp]> = [
  ['--no-concurrent-recompilation', /--(?:no[-_])?(?:concurrent[-_]recompilation|single[-_]threaded)(?![-_\w])/],
  ['--single-threaded-gc', /--(?:no[-_])?single[-_]threaded(?:[-_]gc)?(?![-_\w])/],
];

/** The ranks of one host and its cores (os.availableParallelism(): the CPUs ivrun may use). */
export interface HostLoad {
  ranks: number;
  cores: number;
}

/** `command` with the rank flags after the node binary, when it runs node, each unless the user set its own. */
export function withRankFlags(
  command: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  load: HostLoad,
  execPath = process.execPath,
): string[] {
  const [program, ...args] = command;
  if (!isNodeBinary(program, execPath)) return [...command];
  const user = (flag: RegExp) => flag.test(env.NODE_OPTIONS ?? '') || args.some((a) => flag.test(a));
  const flags: string[] = [];
  if (!user(SEMI_SPACE_FLAG)) flags.push(`--min-semi-space-size=${YOUNG_SEMI_SPACE_MB}`);
  if (load.ranks >= load.cores) for (const [flag, users] of FULL_HOST_FLAGS) if (!user(users)) flags.push(flag);
  return [program!, ...flags, ...args];
}
