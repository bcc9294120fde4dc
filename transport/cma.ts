// Single copy between co-resident ranks: the receiver copies a large message straight out of the
// sender's memory (process_vm_readv, kmod/src/cma.cc), the analog of Xen's grant copy and of Open
// MPI's CMA path. The sender only names an address in its own process; the pid comes from the
// launcher. Whether the kernel allows it (same user, ptrace policy, seccomp) is learned from the
// first attempt per peer: a refusal falls back to streaming through the ring, for good.

/** The part of kmod/index.ts this uses. */
export interface CmaKmod {
  memAddress(view: ArrayBufferView): bigint;
  vmRead(pid: number, address: bigint, dst: ArrayBufferView, dstOff: number, n: number): void;
}

export class CrossMemory {
  /** Peers the kernel refused to read (or whose address failed): stream from now on. */
  private readonly refused = new Set<number>();
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

  /** Where `view`'s bytes are in this process, for the peer to read. */
  address(view: Uint8Array): bigint {
    return this.kmod.memAddress(view);
  }

  /** Copies `dest.byteLength` bytes from `peer` at `address`. False: refused, use the ring. */
  read(peer: number, address: bigint, dest: Uint8Array): boolean {
    const pid = this.pidOf(peer);
    if (pid === undefined || this.refused.has(peer)) return false;
    try {
      this.kmod.vmRead(pid, address, dest, 0, dest.byteLength);
      return true;
    } catch (err) {
      this.refused.add(peer);
      this.lastRefusal = (err as Error)?.message;
      return false;
    }
  }
}
