// ivcom_pgrp PROGRAM [ARGS...]: runs PROGRAM in a process group of its own, in the caller's
// session. The launcher starts every rank through it, so that a rank and whatever it starts can
// be signalled together (kill(-pgid)) without a session of its own: with the kernel's automatic
// scheduling groups (CONFIG_SCHED_AUTOGROUP, one per session, on by default), setsid() would
// also put each rank in a scheduling group of its own, and sched_yield() between ranks that
// share a core would then yield nothing: the CPU is shared between groups first, and in its
// group a rank is alone.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: ivcom_pgrp PROGRAM [ARGS...]\n");
    return 2;
  }
  if (setpgid(0, 0) != 0) {
    fprintf(stderr, "ivcom_pgrp: setpgid: %s\n", strerror(errno));
    return 126;
  }
  execvp(argv[1], argv + 1);
  // The shell's statuses: 127 not found, 126 found but not runnable.
  int err = errno;
  fprintf(stderr, "ivcom_pgrp: %s: %s\n", argv[1], strerror(err));
  return err == ENOENT ? 127 : 126;
}
