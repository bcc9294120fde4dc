// Single copy between co-resident ranks: a large message moves straight from the sender's memory
// into the receiver's (process_vm_readv by the receiver, and process_vm_writev by the sender when
// both share the copy; kmod/src/cma.cc), the analog of Xen's grant copy and of Open MPI's CMA
// path. Each side only names an address in its own process; the pid comes from the launcher.
// Whether the kernel allows it (same user, ptrace policy, seccomp) is learned from the first
// attempt per peer and direction: a refusal falls back to streaming through the ring (reads) or to
// leaving the copy to the receiver (writes), for good.

/** The part of kmod/index.ts this uses. */
export interface CmaKmod {
  memAddress(view: ArrayBufferView): bigint;
  vmRead(pid: number, address: bigint, dst: ArrayBufferView, dstOff: number, n: number): void;
  vmWrite(pid: number, address: bigint, src: ArrayBufferView, srcOff: number, n: number): void;
}

export class CrossMemory {
  /** Peers the kernel refused to read (or whose address failed): stream from now on. */
  private readonly refused = new Set<number>();
  /** Peers the kernel refused to write to: their copies are left to them. */
  private readonly writeRefused = new Set<number>();
  /** Peers read from successfully at least once. */
  private readonly readable = new Set<number>();
  /** Why the last refusal happened, for diagnostics (`errno` name and call). */
  lastRefusal: string | undefined;

  constructor(
    private readonly kmod: CmaKmod,
    /** The launcher's pid of a peer that may be read from (same host and pid namespace), else undefined. */
    private readonly pidOf: (peer: number) => number | undefined,
  ) {}

  /** Whether a read from `peer` is worth trying. */
  allowed(peer: number): boolean {
    return !this.refused.has(peer) && this.pidOf(peer) !== undefined;
  }

  /** Whether reads from `peer` have worked (so a copy shared with it will not be refused half-way). */
  proven(peer: number): boolean {
    return this.readable.has(peer) && !this.refused.has(peer);
  }

  /** Whether a write to `peer` is worth trying. */
  writable(peer: number): boolean {
    return !this.writeRefused.has(peer) && this.pidOf(peer) !== undefined;
  }

  /** Where `view`'s bytes are in this process, for the peer to read or write. */
  address(view: Uint8Array): bigint {
    return this.kmod.memAddress(view);
  }

  /**
   * Copies `n` bytes from `peer` at `address` into `dest` at `off` (default: all of `dest`).
   * False: refused, use the ring.
   */
  read(peer: number, address: bigint, dest: Uint8Array, off = 0, n = dest.byteLength - off): boolean {
    const pid = this.pidOf(peer);
    if (pid === undefined || this.refused.has(peer)) return false;
    try {
      this.kmod.vmRead(pid, address, dest, off, n);
    } catch (err) {
      this.refused.add(peer);
      this.lastRefusal = (err as Error)?.message;
      return false;
    }
    this.readable.add(peer);
    return true;
  }

  /** Copies `n` bytes of `src` from `off` to `address` in `peer`. False: refused, leave it to the peer. */
  write(peer: number, address: bigint, src: Uint8Array, off: number, n: number): boolean {
    const pid = this.pidOf(peer);
    if (pid === undefined || this.writeRefused.has(peer)) return false;
    try {
      this.kmod.vmWrite(pid, address, src, off, n);
      return true;
    } catch (err) {
      this.writeRefused.add(peer);
      this.lastRefusal = (err as Error)?.message;
      return false;
    }
  }
}
