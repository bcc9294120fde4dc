// Cross-memory attach: one copy straight between a peer process's memory and ours
// (process_vm_readv, process_vm_writev), the analog of Xen's grant copy and of Open MPI's CMA
// single-copy path. A write is the sender's half of a copy both ranks of a pair take part in
// (runtime/shared-copy.ts): the receiver named the destination and shares the work.
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

// Copies n bytes between `remote` of process `pid` and `local` (out of the peer when `write` is
// false), looping over partial transfers (the kernel stops at a page it cannot reach, or after a
// signal). Returns n or -errno.
int64_t VmCopy(int pid, uint64_t remote, uint8_t* local, uint64_t n, bool write) {
  uint64_t done = 0;
  while (done < n) {
    iovec near{local + done, static_cast<size_t>(n - done)};
    iovec far{reinterpret_cast<void*>(remote + done), static_cast<size_t>(n - done)};
    const ssize_t r = write ? process_vm_writev(pid, &near, 1, &far, 1, 0) : process_vm_readv(pid, &near, 1, &far, 1, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) return -EFAULT;  // nothing more could be copied: the rest is not mapped
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

// vmRead(pid, address, dst, dstOff, n) copies n bytes from process pid at `address` into dst;
// vmWrite(pid, address, src, srcOff, n) copies n bytes of src into process pid at `address`.
Napi::Value VmCopy(const Napi::CallbackInfo& info, bool write) {
  Napi::Env env = info.Env();
  const char* const name = write ? "vmWrite" : "vmRead";
  uint64_t pid, off, n;
  TypedView v;
  if (!ArgBytes(info, 0, "pid", 1, INT32_MAX, &pid)) return env.Undefined();
  if (!info[1].IsBigInt()) {
    ThrowArgType(env, "The \"address\" argument must be a bigint");
    return env.Undefined();
  }
  bool lossless = false;
  const uint64_t remote = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) {
    ThrowArgRange(env, std::string(name) + ": the address is not a 64-bit unsigned integer");
    return env.Undefined();
  }
  if (!ArgTypedArray(info, 2, write ? "src" : "dst", &v) || !ArgBytes(info, 3, write ? "srcOff" : "dstOff", 0, kMaxSafeInteger, &off) ||
      !ArgBytes(info, 4, "n", 0, kMaxSafeInteger, &n)) {
    return env.Undefined();
  }
  const uint64_t bytes = v.length * ElementBytes(v.type);
  if (off > bytes || n > bytes - off) {
    ThrowArgRange(env, std::string(name) + (write ? ": the range runs past the end of src" : ": the range runs past the end of dst"));
    return env.Undefined();
  }
  if (remote + n < remote) {
    ThrowArgRange(env, std::string(name) + ": the remote range wraps around the address space");
    return env.Undefined();
  }
  const int64_t r = core::VmCopy(static_cast<int>(pid), remote, v.data + off, n, write);
  if (r < 0) ThrowErrno(env, static_cast<int>(-r), write ? "process_vm_writev" : "process_vm_readv");
  return env.Undefined();
}

Napi::Value VmRead(const Napi::CallbackInfo& info) { return VmCopy(info, false); }
Napi::Value VmWrite(const Napi::CallbackInfo& info) { return VmCopy(info, true); }

}  // namespace

Napi::Object InitCma(Napi::Env env, Napi::Object exports) {
  exports.Set("memAddress", Napi::Function::New(env, MemAddress, "memAddress"));
  exports.Set("vmRead", Napi::Function::New(env, VmRead, "vmRead"));
  exports.Set("vmWrite", Napi::Function::New(env, VmWrite, "vmWrite"));
  return exports;
}

}  // namespace ivcom
