// Decoding in the process that encoded: the receiving side of a pair in one object, so that
// records of object shapes (runtime/shapes.ts) decode as they would after the shapes frame.
import { decode } from '../../runtime/codec.js';
import { PeerShapes } from '../../runtime/shapes.js';

const here = new PeerShapes(0, 256);

/** decode() as a receiver that has been told every shape this process has sent, as rank `peer`'s. */
export function decodeLocal(codec: number, bytes: Uint8Array, peer: number): unknown {
  if (here.behind(peer)) here.learn(peer, here.announce(peer));
  return decode(codec, bytes, peer, here);
}
