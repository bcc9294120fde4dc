// V8's young generation for Node ranks. A rank that passes messages drops small objects at a
// steady rate (receives, promises, decoded values) and keeps few of them; V8 starts each
// semi-space at 1 MiB and grows it only when much survives, so such a rank scavenges every
// megabyte or so, and every scavenge wakes V8's helper threads, which then take the cores from
// the spinning ranks: most of the context switches left in a stream of messages
// (docs/performance.md). ivrun starts `node` ranks with the semi-space at V8's default maximum
// instead. A scavenge costs by what survives, not by the space's size, so scavenges get rarer
// and no longer; the price is address space, and memory only as far as the program allocates.
// The flag cannot go through NODE_OPTIONS (Node refuses it there), so it is put on the command
// line, right after the node binary. Any semi-space flag of the user's own wins.

import { isNodeBinary } from './program.js';

/** MiB per semi-space: V8's default maximum on 64-bit hosts, so the space starts where it may grow to. */
export const YOUNG_SEMI_SPACE_MB = 16;
const USER_FLAG = /--(?:min|max)[-_]semi[-_]space[-_]size|--semi[-_]space[-_]growth[-_]factor/;

/** `command` with the young generation flag after the node binary, when it runs node and the user set none. */
export function withYoungGeneration(command: readonly string[], env: Readonly<Record<string, string | undefined>>, execPath = process.execPath): string[] {
  const [program, ...args] = command;
  if (!isNodeBinary(program, execPath)) return [...command];
  if (USER_FLAG.test(env.NODE_OPTIONS ?? '') || args.some((a) => USER_FLAG.test(a))) return [...command];
  return [program, `--min-semi-space-size=${YOUNG_SEMI_SPACE_MB}`, ...args];
}
