// Public surface of the ivcom transport (shared-memory rings between co-resident ranks).
export {
  DEFAULT_CHUNK_BYTES,
  DEFAULT_RING_BYTES,
  MAX_RING_BYTES,
  MIN_RING_BYTES,
  segmentBytes,
  ringBytesOfSegment,
} from './layout.js';
export type { Grant, GrantSource } from './grant.js';
export { IvcomChannel, DEFAULT_LIMITS, type Bell, type ChannelLimits, type ChannelOptions, type DestinationRequest } from './channel.js';
export {
  IvcomTransport,
  type IvcomTransportOptions,
  type KmodLike,
  type FdWatcherLike,
} from './transport.js';
