// Whether the program of a job can be started on this host, checked before any rank is: a
// misspelt command otherwise shows only as every rank exiting 127 with the shell's words.

import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';

function runnable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Why `program` cannot be run with `PATH` from `cwd`, or undefined when it can. */
export function whyNotRunnable(program: string, PATH: string | undefined, cwd: string): string | undefined {
  if (program.includes('/')) {
    const file = path.resolve(cwd, program);
    if (runnable(file)) return undefined;
    return `${program}: ${statSync(file, { throwIfNoEntry: false }) === undefined ? 'no such file' : 'not an executable file'}; give the path of a program (e.g. ivrun -n 2 node app.js)`;
  }
  const dirs = (PATH ?? '').split(':').map((d) => d || '.');
  if (dirs.some((d) => runnable(path.resolve(cwd, d, program)))) return undefined;
  return `${program}: command not found on PATH; give its path, install it, or add its directory to PATH (ranks get ivrun's PATH, or -x PATH=...)`;
}

const NODE_BINARIES = new Set(['node', 'nodejs']);

/** Whether `program` is the node binary itself (by name, or ivrun's own Node), not a wrapper that starts it. */
export function isNodeBinary(program: string | undefined, execPath = process.execPath): boolean {
  return program !== undefined && (NODE_BINARIES.has(path.basename(program)) || program === execPath);
}
