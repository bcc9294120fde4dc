// How a channel's segment arrives. The launcher (grant authority, like Xen's dom0) creates the
// segment lazily when either rank of a pair first sends to the other, formats nothing in it
// (zero-filled, see layout.ts), and pushes a grant to BOTH ranks: a rank may receive a grant it
// never requested (its peer asked first), and must attach it so it reads what the peer sends.

export interface Grant {
  /** World rank of the other side. */
  peer: number;
  /** memfd of the segment; the receiver maps it and closes the fd right away. */
  segmentFd: number;
  /** Size of the segment in bytes: segmentBytes(ringBytes) of layout.ts. */
  bytes: number;
  /** eventfd this rank watches (its doorbell). Owned by the receiver of the grant. */
  localBellFd: number;
  /** eventfd this rank rings to wake the peer. Owned by the receiver of the grant. */
  peerBellFd: number;
  /** This rank is the lower world rank of the pair (it produces into ring 0). */
  low: boolean;
}

export interface GrantSource {
  /** Ask the launcher for a channel to `peer`. Idempotent on the launcher side. */
  request(peer: number): void;
  /** Register the (single) grant handler. Grants may arrive unrequested. */
  onGrant(cb: (g: Grant) => void): void;
  /** Ask the launcher for this host's group (group.ts); it arrives once, through onGroup. */
  requestGroup?(): void;
  onGroup?(cb: (g: import('./group-layout.js').GroupGrant) => void): void;
}
