// Rank output is passed on whole lines at a time, so two ranks never interleave half lines.

import readline from 'node:readline';
import type { Readable } from 'node:stream';

/** Calls `onLine` for every line of `input`; resolves when the input ends. */
export function forwardLines(input: Readable, onLine: (line: string) => void): Promise<void> {
  const rl = readline.createInterface({ input, crlfDelay: Infinity, terminal: false });
  rl.on('line', onLine);
  return new Promise((resolve) => rl.once('close', () => resolve()));
}
