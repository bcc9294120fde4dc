// `--osu`: results printed the way the OSU micro-benchmarks print theirs (osu_latency, osu_bw,
// osu_allreduce, ...), so they sit beside OSU output: the test's header, the `# Size` header,
// then one line per size (size left-aligned in 10 columns, the value right-aligned in 18 with
// two decimals, as OSU's `%-*d%*.*f`). A comment line after the header names the transport.

/** OSU's column widths and precision (osu_util.h: FIELD_WIDTH, FLOAT_PRECISION). */
const SIZE_WIDTH = 10;
const FIELD_WIDTH = 18;
const FLOAT_PRECISION = 2;
/** The OSU release whose format this follows. */
const OSU_VERSION = '7.4';

const TITLES: Record<string, [string, string]> = {
  latency: ['OSU MPI Latency Test', 'Latency (us)'],
  bandwidth: ['OSU MPI Bandwidth Test', 'Bandwidth (MB/s)'],
  allreduce: ['OSU MPI Allreduce Latency Test', 'Avg Latency(us)'],
  reduce: ['OSU MPI Reduce Latency Test', 'Avg Latency(us)'],
  bcast: ['OSU MPI Broadcast Latency Test', 'Avg Latency(us)'],
  barrier: ['OSU MPI Barrier Latency Test', 'Avg Latency(us)'],
  allgather: ['OSU MPI Allgather Latency Test', 'Avg Latency(us)'],
  alltoall: ['OSU MPI All-to-All Personalized Exchange Latency Test', 'Avg Latency(us)'],
  gather: ['OSU MPI Gather Latency Test', 'Avg Latency(us)'],
  scatter: ['OSU MPI Scatter Latency Test', 'Avg Latency(us)'],
};

/** The lines OSU would print for `test` ('latency', 'bandwidth' or a collective's name). */
export function osuBlock(test: string, note: string, rows: Array<[bytes: number, value: number]>): string[] {
  const [title, column] = TITLES[test] ?? [`OSU MPI ${test} Latency Test`, 'Avg Latency(us)'];
  const lines = [`# ${title} v${OSU_VERSION}`, `# ${note}`];
  if (test === 'barrier') {
    // osu_barrier prints no size column.
    lines.push(`# ${column}`);
    for (const [, v] of rows) lines.push(v.toFixed(FLOAT_PRECISION).padStart(FIELD_WIDTH));
    return lines;
  }
  lines.push('# Size'.padEnd(SIZE_WIDTH) + column.padStart(FIELD_WIDTH));
  for (const [b, v] of rows) lines.push(String(b).padEnd(SIZE_WIDTH) + v.toFixed(FLOAT_PRECISION).padStart(FIELD_WIDTH));
  return lines;
}
