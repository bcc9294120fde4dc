// Rank output forwarded whole lines at a time, so two ranks never interleave half lines.

import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';

export interface LineSink {
  /** Last lines a rank wrote to stderr, to name the cause when it fails. */
  tail: string[];
}

export function forwardLines(input: Readable, out: Writable, prefix: string, keep?: LineSink): Promise<void> {
  const rl = readline.createInterface({ input, crlfDelay: Infinity, terminal: false });
  rl.on('line', (line) => {
    if (keep) {
      keep.tail.push(line);
      if (keep.tail.length > 30) keep.tail.shift();
    }
    try {
      out.write(prefix + line + '\n');
    } catch {
      // Our own stdout went away (e.g. piped into `head`); keep draining the rank.
    }
  });
  return new Promise((resolve) => rl.once('close', () => resolve()));
}
