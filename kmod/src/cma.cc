// Cross-memory attach: one copy straight from a peer process's memory into ours
// (process_vm_readv), the analog of Xen's grant copy and of Open MPI's CMA single-copy path.
// The kernel checks the permission (same user and ptrace access mode ATTACH_REALCREDS, so Yama
// and LSMs may refuse) and faults in both sides' pages; a remote range that is not mapped fails
// with EFAULT, never touching our memory outside `dst`. The peer only names an address in its
// own process (the pid comes from the launcher, not from the peer), so it can only give us data
// it could have sent anyway.
#include "common.h"

#include <sys/uio.h>

#include <cerrno>

namespace ivcom {

namespace core {

// Reads n bytes at `remote` of process `pid` into dst, looping over partial transfers (the
// kernel stops at a page it cannot read, or after a signal). Returns n or -errno.
int64_t VmRead(int pid, uint64_t remote, uint8_t* dst, uint64_t n) {
  uint64_t done = 0;
  while (done < n) {
    iovec local{dst + done, static_cast<size_t>(n - done)};
    iovec far{reinterpret_cast<void*>(remote + done), static_cast<size_t>(n - done)};
    const ssize_t r = process_vm_readv(pid, &local, 1, &far, 1, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) return -EFAULT;  // nothing more could be read: the rest is not mapped
    done += static_cast<uint64_t>(r);
  }
  return static_cast<int64_t>(n);
}

}  // namespace core

namespace {

// memAddress(view): the address of the view's first byte in this process, as a BigInt.
Napi::Value MemAddress(const Napi::CallbackInfo& info) {
  TypedView v;
  if (!ArgTypedArray(info, 0, "view", &v)) return info.Env().Undefined();
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(v.data)));
}

// vmRead(pid, address, dst, dstOff, n): copies n bytes from process pid at `address` into dst.
Napi::Value VmRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t pid, dOff, n;
  TypedView d;
  if (!ArgBytes(info, 0, "pid", 1, INT32_MAX, &pid)) return env.Undefined();
  if (!info[1].IsBigInt()) {
    ThrowArgType(env, "The \"address\" argument must be a bigint");
    return env.Undefined();
  }
  bool lossless = false;
  const uint64_t remote = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) {
    ThrowArgRange(env, "vmRead: the address is not a 64-bit unsigned integer");
    return env.Undefined();
  }
  if (!ArgTypedArray(info, 2, "dst", &d) || !ArgBytes(info, 3, "dstOff", 0, kMaxSafeInteger, &dOff) ||
      !ArgBytes(info, 4, "n", 0, kMaxSafeInteger, &n)) {
    return env.Undefined();
  }
  const uint64_t dBytes = d.length * ElementBytes(d.type);
  if (dOff > dBytes || n > dBytes - dOff) {
    ThrowArgRange(env, "vmRead: the range runs past the end of dst");
    return env.Undefined();
  }
  if (remote + n < remote) {
    ThrowArgRange(env, "vmRead: the remote range wraps around the address space");
    return env.Undefined();
  }
  const int64_t r = core::VmRead(static_cast<int>(pid), remote, d.data + dOff, n);
  if (r < 0) ThrowErrno(env, static_cast<int>(-r), "process_vm_readv");
  return env.Undefined();
}

}  // namespace

Napi::Object InitCma(Napi::Env env, Napi::Object exports) {
  exports.Set("memAddress", Napi::Function::New(env, MemAddress, "memAddress"));
  exports.Set("vmRead", Napi::Function::New(env, VmRead, "vmRead"));
  return exports;
}

}  // namespace ivcom
