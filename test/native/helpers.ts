import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** Asserts that fn throws the addon's error shape for the given errno name and syscall. */
export function expectNativeError(fn: () => unknown, errnoName: keyof typeof constants.errno, syscall: string, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(Error);
  const err = caught as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
  expect(err.code).toBe('ERR_IVCOM_NATIVE');
  expect(err.errno).toBe(constants.errno[errnoName]);
  expect(err.syscall).toBe(syscall);
  expect(err.message).toContain(`(${errnoName})`);
  if (message) expect(err.message).toMatch(message);
}

export const openFdCount = (): number => readdirSync('/proc/self/fd').length;

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns `node <fixture> ...args` and collects its output. */
export function runChild(args: string[], stdio: StdioOptions, nodeArgs: string[] = []): { child: ChildProcess; done: Promise<ChildResult> } {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<ChildResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Resolves when `pred` holds on the child's accumulated stdout. */
export function waitForOutput(child: ChildProcess, pred: (out: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (s: Buffer | string) => {
      out += s.toString();
      if (pred(out)) {
        child.stdout?.off('data', onData);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.once('close', () => reject(new Error(`child exited before expected output; got: ${out}`)));
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
