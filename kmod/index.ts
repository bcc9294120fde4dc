// Typings and loader for the native addon (build/Release/ivcom_kmod.node, built by node-gyp).
//
// Mechanisms only: every function is a thin wrapper over one or two system calls. Errors from the
// system are thrown as `Error` objects with `code: 'ERR_IVCOM_NATIVE'`, a positive `errno` and the
// failing `syscall` (see `NativeError`); wrong argument types/ranges throw TypeError/RangeError
// with Node's `ERR_INVALID_ARG_TYPE` / `ERR_OUT_OF_RANGE` codes.
import { BUILD_HINT } from './build-hint.js';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { builtFile } from './package-root.js';

/** Shape of errors raised by the addon for failed system calls or hostile input. */
export interface NativeError extends Error {
  code: 'ERR_IVCOM_NATIVE';
  /** Positive errno value, e.g. 9 for EBADF. */
  errno: number;
  /** The failing call, e.g. 'memfd_create', or 'segmentMap' when a segment fails validation. */
  syscall: string;
}

/** One message received by `recvFds`. */
export interface ReceivedGrant {
  /** The message bytes (a copy; at most 4096 bytes). */
  data: Buffer;
  /** Received fds, already close-on-exec. The caller owns them and must close them. */
  fds: number[];
  /** True when the peer closed its end (a 0-byte read with the socket hung up). */
  eof: boolean;
}

/**
 * Watches an fd for readability on the default event loop (uv_poll). The watcher does not own
 * the fd: close the watcher before closing the fd. Do not create two watchers for one fd.
 * A started watcher keeps its JS object alive (like a socket) until stop() or close();
 * an idle one is released when garbage-collected. Methods after close() are no-ops.
 */
export interface FdWatcher {
  /** Begin watching (UV_READABLE). Note: libuv sets O_NONBLOCK on the fd when the watcher is created. */
  start(): void;
  stop(): void;
  /** The watcher keeps the process alive while started (default). */
  ref(): void;
  /** The watcher no longer keeps the process alive. */
  unref(): void;
  /** Stop and release the handle. Idempotent. */
  close(): void;
}

export interface FdWatcherConstructor {
  /**
   * `onReadable` runs as an I/O callback: promise reactions queued inside it run right after it
   * returns, and an exception thrown from it is an uncaught exception.
   */
  new (fd: number, onReadable: () => void): FdWatcher;
  readonly prototype: FdWatcher;
}

interface Addon {
  segmentCreate(name: string, bytes: number): number;
  segmentMap(fd: number, bytes: number): SharedArrayBuffer;
  closeFd(fd: number): void;
  socketPair(): [number, number];
  streamPair(): [number, number];
  unixListen(name: string): number;
  unixAccept(fd: number): number | null;
  unixConnect(name: string): number;
  dieWithParent(): boolean;
  sendFds(sock: number, fds: number[], data: Uint8Array): void;
  recvFds(sock: number): ReceivedGrant | null;
  eventfdCreate(): number;
  doorbellRing(fd: number): void;
  doorbellDrain(fd: number): number;
  cpuYield(): void;
  FdWatcher: FdWatcherConstructor;
  reduceInto: ReduceInto;
  copyBytes: CopyBytes;
  copyToPeer: CopyToPeer;
  copyChoiceWords: number;
  memAddress: MemAddress;
  vmRead: VmRead;
  vmWrite: VmWrite;
  crc32c: Crc32c;
  crc32cHardware: boolean;
}

function loadAddon(): Addon {
  // From source (under vitest) or compiled (dist/): found from the package root either way.
  const path = builtFile(import.meta.url, 'ivcom_kmod.node');
  if (!existsSync(path)) {
    throw new Error(`ivcom: native addon not built (${path} is missing); ${BUILD_HINT}`);
  }
  return createRequire(import.meta.url)(path) as Addon;
}

const addon = loadAddon();

/** Path-less shared memory: memfd sealed against shrink/grow (and further sealing). Returns the fd. */
export const segmentCreate: (name: string, bytes: number) => number = addon.segmentCreate;
/**
 * Maps a segment fd (possibly from a peer: it is validated — size must equal `bytes`, seals must
 * include SHRINK and GROW — else throws with errno EINVAL, syscall 'segmentMap'). The fd can be
 * closed afterwards; the mapping lives until the SharedArrayBuffer is garbage-collected.
 */
export const segmentMap: (fd: number, bytes: number) => SharedArrayBuffer = addon.segmentMap;
export const closeFd: (fd: number) => void = addon.closeFd;
/** AF_UNIX SOCK_SEQPACKET pair, close-on-exec. */
export const socketPair: () => [number, number] = addon.socketPair;
/** AF_UNIX SOCK_STREAM pair, close-on-exec (what net.Socket({ fd }) takes). */
export const streamPair: () => [number, number] = addon.streamPair;
/** A listening SOCK_SEQPACKET socket on an abstract AF_UNIX name (nothing in the file system); non-blocking. */
export const unixListen: (name: string) => number = addon.unixListen;
/** The next pending connection (non-blocking, close-on-exec), or null when none waits. */
export const unixAccept: (fd: number) => number | null = addon.unixAccept;
/** Connects a SOCK_SEQPACKET socket to an abstract AF_UNIX name (close-on-exec). */
export const unixConnect: (name: string) => number = addon.unixConnect;
/** SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); false: the parent is gone already. */
export const dieWithParent: () => boolean = addon.dieWithParent;
/** One message: up to 64 fds (SCM_RIGHTS) and up to 4096 bytes. May block if the peer's queue is full. */
export const sendFds: (sock: number, fds: number[], data: Uint8Array) => void = addon.sendFds;
/** Non-blocking receive of one message; null when nothing is queued. */
export const recvFds: (sock: number) => ReceivedGrant | null = addon.recvFds;
/** eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK). */
export const eventfdCreate: () => number = addon.eventfdCreate;
/** Adds 1 to the eventfd counter; a saturated counter counts as rung. */
export const doorbellRing: (fd: number) => void = addon.doorbellRing;
/** Reads and resets the counter: the number of rings since the last drain, 0 if none. */
export const doorbellDrain: (fd: number) => number = addon.doorbellDrain;
/** sched_yield(): lets another runnable thread have this CPU (polling with more ranks than cores). */
export const cpuYield: () => void = addon.cpuYield;
export const FdWatcher: FdWatcherConstructor = addon.FdWatcher;


/** Any typed array the reduction kernels take (one kind for all three operands). */
export type NumericArray =
  | Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

/**
 * out[off+i] = a[off+i] (op) b[bOff+i] for i < n, op 0..6 = SUM PROD MIN MAX BAND BOR BXOR, with
 * the JS kernels' exact results. Returns false, doing nothing, for what it leaves to JS
 * (Uint8ClampedArray, bitwise ops on floats, `b` overlapping `out`). Throws on kinds that differ
 * or ranges past an array's end.
 */
export type ReduceInto = (op: number, out: NumericArray, a: NumericArray, off: number, b: NumericArray, bOff: number, n: number) => boolean;
export const reduceInto: ReduceInto = addon.reduceInto;

/**
 * memmove of n bytes from src (at byte srcOff) to dst (at byte dstOff), any typed-array kinds,
 * SharedArrayBuffer-backed or not; throws on ranges past either array's end. For long copies
 * into or out of a SharedArrayBuffer, which V8 performs with relaxed atomics (src/copy.cc).
 */
export type CopyBytes = (dst: ArrayBufferView, dstOff: number, src: ArrayBufferView, srcOff: number, n: number) => void;
export const copyBytes: CopyBytes = addon.copyBytes;

/**
 * copyBytes into memory a co-resident peer reads (a ring of the segment), by cached or by
 * streaming (non-temporal) stores, whichever has cost less lately; `choice` holds what it
 * measured (a private Float64Array of copyChoiceWords, one per ring; src/copy.cc).
 */
export type CopyToPeer = (dst: ArrayBufferView, dstOff: number, src: ArrayBufferView, srcOff: number, n: number, choice: Float64Array) => void;
export const copyToPeer: CopyToPeer = addon.copyToPeer;
/** Length of copyToPeer's `choice`. */
export const copyChoiceWords: number = addon.copyChoiceWords;

/** The address of a view's first byte in this process (for a co-resident peer's vmRead). */
export type MemAddress = (view: ArrayBufferView) => bigint;
export const memAddress: MemAddress = addon.memAddress;

/**
 * process_vm_readv: copies n bytes at `address` of process `pid` into dst (at byte dstOff). Throws
 * a NativeError (syscall 'process_vm_readv') when the kernel refuses (EPERM: another user or
 * ptrace policy; ESRCH: no such process) or the remote range is not mapped (EFAULT).
 */
export type VmRead = (pid: number, address: bigint, dst: ArrayBufferView, dstOff: number, n: number) => void;
export const vmRead: VmRead = addon.vmRead;

/**
 * process_vm_writev: copies n bytes of src (from byte srcOff) to `address` of process `pid`. Throws
 * a NativeError (syscall 'process_vm_writev') on the same refusals as vmRead.
 */
export type VmWrite = (pid: number, address: bigint, src: ArrayBufferView, srcOff: number, n: number) => void;
export const vmWrite: VmWrite = addon.vmWrite;

/**
 * CRC-32C (Castagnoli) of a typed array's bytes, continuing from `seed` (the CRC of the bytes
 * before them; 0 for none): crc32c(b, crc32c(a)) === crc32c(a ++ b). '123456789' gives
 * 0xE3069283. The end-to-end check of `ivrun --verify` (src/checksum.cc).
 */
export type Crc32c = (data: ArrayBufferView, seed?: number) => number;
export const crc32c: Crc32c = addon.crc32c;
/** Whether crc32c runs on the CPU's crc32 instruction (SSE4.2) rather than the table. */
export const crc32cHardware: boolean = addon.crc32cHardware;
