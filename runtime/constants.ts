/** Wildcards for receives and probes (mpi4py's defaults). */
export const ANY_SOURCE = -1;
export const ANY_TAG = -1;
/** The null peer (MPI_PROC_NULL): a send to it completes at once and sends nothing; a receive from it completes at once with nothing. */
export const PROC_NULL = -2;
/** Largest user tag (MPI_TAG_UB). Tags are 32-bit signed on the wire. */
export const TAG_UB = 0x7fffffff;
