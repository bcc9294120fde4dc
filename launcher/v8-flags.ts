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
// - The optimizing compiler on the rank's own thread (`--no-concurrent-recompilation`) when the
//   host's ranks take every core. V8 compiles hot functions on helper threads; with no core to
//   spare, a compile job preempts a rank, and the peer waiting for that rank spins through the
//   rest of its time slice: a tail of steps taking milliseconds (docs/performance.md, stop 26).
//   On the rank's thread the same compile costs the rank, once, what it costs the pair at every
//   preemption. With a core to spare the helper threads run there, and the default stays.

import { isNodeBinary } from './program.js';

/** MiB per semi-space: V8's default maximum on 64-bit hosts, so the space starts where it may grow to. */
export const YOUNG_SEMI_SPACE_MB = 16;
const SEMI_SPACE_FLAG = /--(?:min|max)[-_]semi[-_]space[-_]size|--semi[-_]space[-_]growth[-_]factor/;
export const NO_CONCURRENT_RECOMPILATION = '--no-concurrent-recompilation';
const RECOMPILATION_FLAG = /--(?:no[-_])?concurrent[-_]recompilation\b/;

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
  if (load.ranks >= load.cores && !user(RECOMPILATION_FLAG)) flags.push(NO_CONCURRENT_RECOMPILATION);
  return [program!, ...flags, ...args];
}
