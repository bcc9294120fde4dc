// Which transport carries traffic to a peer: self; ivcom for a co-resident pair (the plan's
// `node` says who is co-resident, never "can I open the segment?"); tcp otherwise. `--transport`
// overrides, and a forced choice that cannot be honoured is an error, never a silent fallback.

import { BUILD_HINT } from '../kmod/build-hint.js';
import type { PeerInfo, TransportMode } from './bootstrap/protocol.js';
import { TransportUnavailableError } from './errors.js';
import type { TransportName } from './transport.js';

export interface Selection {
  rank: number;
  peers: PeerInfo[];
  mode: TransportMode;
  /** Whether this process has the shared-memory transport (the addon loaded, grants offered). */
  ivcom: boolean;
}

export function selectTransport(s: Selection, peer: number): TransportName {
  if (peer === s.rank) return 'self';
  const sameNode = s.peers[peer]!.node === s.peers[s.rank]!.node;
  if (s.mode === 'auto') return sameNode && s.ivcom ? 'ivcom' : 'tcp';
  if (s.mode === 'tcp') return 'tcp';
  if (!sameNode) {
    throw new TransportUnavailableError(
      `rank ${s.rank}: --transport ivcom was forced but rank ${peer} is on another host; shared memory only joins ranks of one host. Use --transport auto or tcp.`,
      { rank: s.rank, peer },
    );
  }
  if (!s.ivcom) {
    throw new TransportUnavailableError(
      `rank ${s.rank}: --transport ivcom was forced but the shared-memory transport is not available (native addon missing?): ${BUILD_HINT}, or use --transport tcp.`,
      { rank: s.rank, peer },
    );
  }
  return 'ivcom';
}
