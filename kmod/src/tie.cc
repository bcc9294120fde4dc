// Tying a process's life to its parent's: PR_SET_PDEATHSIG, what ivrun's setpriv --pdeathsig
// does for the ranks it starts itself. A rank started through a wrapper (npm, npx) calls it for
// its own sake, so that ivrun's death still reaches it down the chain of parents.
#include "common.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

namespace ivcom {

namespace {

// Returns false when the parent had already gone before the tie was made (then the caller is
// orphaned and should leave by itself).
Napi::Value DieWithParent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
    ThrowErrno(env, errno, "prctl");
    return env.Undefined();
  }
  // The parent may have died between getppid() and prctl(): then no signal will ever come.
  return Napi::Boolean::New(env, getppid() == parent);
}

}  // namespace

Napi::Object InitTie(Napi::Env env, Napi::Object exports) {
  exports.Set("dieWithParent", Napi::Function::New(env, DieWithParent, "dieWithParent"));
  return exports;
}

}  // namespace ivcom
