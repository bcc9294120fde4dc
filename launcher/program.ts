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

/** Node options that take their value as the next word (the others are one word: --flag or --flag=value). */
const NODE_VALUE_OPTIONS = new Set(['-r', '--require', '--import', '--loader', '--experimental-loader', '-C', '--conditions', '--env-file', '--title', '--input-type']);
/** Node options that run code other than a script file: a thread host has no file to start its workers on. */
const NODE_NO_SCRIPT = new Set(['-e', '--eval', '-p', '--print', '-i', '--interactive', '-', '--test', '--run']);

/**
 * `node [options] script [args]` taken apart, for --ranks-as threads (the options go to the
 * process, the script and its arguments to every rank's worker); a string says why it cannot be.
 */
export function splitNodeCommand(command: readonly string[], execPath = process.execPath): { node: string; flags: string[]; script: string; args: string[] } | string {
  const [node, ...rest] = command;
  if (!isNodeBinary(node, execPath)) {
    return `--ranks-as threads runs a Node script in threads of one process, so the command must be 'node [options] script.js [args]', not '${node ?? ''}'`;
  }
  const flags: string[] = [];
  let i = 0;
  while (i < rest.length && rest[i]!.startsWith('-')) {
    const w = rest[i]!;
    if (NODE_NO_SCRIPT.has(w.split('=')[0]!)) return `--ranks-as threads needs a script file to start each rank on; node ${w} has none (write the code to a file)`;
    flags.push(w);
    if (NODE_VALUE_OPTIONS.has(w) && i + 1 < rest.length) flags.push(rest[++i]!);
    i++;
  }
  if (i >= rest.length) return `--ranks-as threads needs a script file to start each rank on: 'node [options] script.js [args]'`;
  return { node: node!, flags, script: rest[i]!, args: rest.slice(i + 1) };
}
