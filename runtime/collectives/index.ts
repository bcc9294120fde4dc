// The collectives, written against the small point-to-point port (port.ts), not against Comm.
// Comm validates its own arguments and calls these with a port bound to its collective context.
// Every function validates root / op / entry counts before any communication and rejects with
// ERR_OUT_OF_RANGE / ERR_INVALID_ARG_TYPE / ERR_IVCOM_UNSUPPORTED; results never alias the
// caller's input and inputs are never mutated.

export { Op } from './op.js';
export type { OpLike } from './op.js';
export type { CollPort } from './port.js';
export { barrier } from './barrier.js';
export { bcast } from './bcast.js';
export { reduce } from './reduce.js';
export { allreduce } from './allreduce.js';
export { gather, allgather } from './gather.js';
export { scatter } from './scatter.js';
export { alltoall } from './alltoall.js';
export { scan, exscan } from './scan.js';
