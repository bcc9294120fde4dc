// --output-filename DIR: every rank's output goes to files of its own instead of ivrun's
// stdout and stderr, in Open MPI 4's layout (DIR/1/rank.N/stdout, DIR/1/rank.N/stderr), so
// scripts written for mpirun find them where they look.

import { closeSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

/** Open MPI numbers the application context; a job of ivrun has one. */
const APP_CONTEXT = '1';

export class OutputFiles {
  private readonly fds = new Map<string, number>();

  /** `dir` is made (with parents) now, so a path that cannot be written fails before any rank starts. */
  constructor(readonly dir: string) {
    makeDirs(path.join(dir, APP_CONTEXT));
  }

  /** Where rank `rank`'s stream `fd` (1: stdout, 2: stderr) goes. */
  pathOf(rank: number, fd: 1 | 2): string {
    return path.join(this.dir, APP_CONTEXT, `rank.${rank}`, fd === 1 ? 'stdout' : 'stderr');
  }

  /** Appends one line; written at once (synchronously), so ivrun's exit loses none. */
  line(rank: number, fd: 1 | 2, text: string): void {
    const file = this.pathOf(rank, fd);
    let out = this.fds.get(file);
    if (out === undefined) {
      makeDirs(path.dirname(file));
      out = openSync(file, 'w');
      this.fds.set(file, out);
    }
    writeSync(out, text + '\n');
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

/**
 * mkdir -p, one level at a time. Node's own `recursive: true` never returns where the kernel
 * answers ENOENT for a parent that exists (mkdir under /proc), so `--output-filename /proc/x`
 * hung ivrun; here that is an error naming the directory that could not be made.
 */
function makeDirs(dir: string): void {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let at: string = path.sep;
  for (const part of parts) {
    at = path.join(at, part);
    if (statSync(at, { throwIfNoEntry: false })?.isDirectory()) continue;
    try {
      mkdirSync(at);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EEXIST' && statSync(at, { throwIfNoEntry: false })?.isDirectory()) continue;
      const why = e.code === 'EEXIST' ? 'it exists and is not a directory' : (e.code ?? e.message);
      throw new Error(`cannot make directory ${at} (${why}); give a directory you can write to`);
    }
  }
}
