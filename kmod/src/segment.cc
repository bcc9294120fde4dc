// memfd segments: the "grant table entry" of a channel.
//
// A memfd has no name in any filesystem, so nothing can outlive its last holder (no /dev/shm
// leftovers after a SIGKILL), and it is shared only by handing the fd over a Unix socket.
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <v8.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ivcom {

namespace core {

// Both holders map the whole file; if either could shrink it, the other would SIGBUS on its
// next access past the new end. GROW is sealed too so the size the peer validated stays true,
// and SEAL so nobody can later add WRITE/FUTURE_WRITE seals under a live mapping's feet.
constexpr int kSegmentSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
constexpr int kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW;

// Transparent huge pages only pay off when the TLB pressure is real; below a few MiB the
// rounding waste and khugepaged work are not worth it.
constexpr size_t kHugePageThreshold = size_t{4} << 20;

int SegmentCreate(const char* name, uint64_t bytes, const char** failed) {
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    *failed = "memfd_create";
    return -errno;
  }
  int rc;
  do rc = ftruncate(fd, static_cast<off_t>(bytes));
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    close(fd);
    *failed = "ftruncate";
    return -err;
  }
  if (fcntl(fd, F_ADD_SEALS, kSegmentSeals) < 0) {
    int err = errno;
    close(fd);
    *failed = "fcntl";
    return -err;
  }
  return fd;
}

// The fd may come from a peer, so everything about it is checked before it is mapped: a file
// that can shrink, or is smaller than what we index into, turns a peer bug into our SIGBUS.
// Returns 0, -errno of a failing syscall (named in *failed), or -EINVAL with *why set.
int SegmentValidate(int fd, uint64_t bytes, const char** failed, std::string* why) {
  struct stat st;
  if (fstat(fd, &st) < 0) {
    *failed = "fstat";
    return -errno;
  }
  if (!S_ISREG(st.st_mode)) {
    *why = "fd " + std::to_string(fd) + " is not a memfd segment (not a regular file)";
    return -EINVAL;
  }
  if (static_cast<uint64_t>(st.st_size) != bytes) {
    *why = "fd " + std::to_string(fd) + " has size " + std::to_string(st.st_size) +
           " bytes, expected " + std::to_string(bytes);
    return -EINVAL;
  }
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    // EINVAL here means the file does not support seals at all (not a memfd): as bad as unsealed.
    if (errno != EINVAL) {
      *failed = "fcntl";
      return -errno;
    }
    seals = 0;
  }
  if ((seals & kRequiredSeals) != kRequiredSeals) {
    *why = "fd " + std::to_string(fd) +
           " is not sealed against shrinking and growing (F_SEAL_SHRINK|F_SEAL_GROW)";
    return -EINVAL;
  }
  return 0;
}

int SegmentMap(int fd, size_t bytes, void** out, const char** failed) {
  void* addr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    *failed = "mmap";
    return -errno;
  }
  if (bytes >= kHugePageThreshold) {
    // Advisory only: shmem THP may be disabled system-wide, and that is fine.
    (void)madvise(addr, bytes, MADV_HUGEPAGE);
  }
  *out = addr;
  return 0;
}

int CloseFd(int fd, const char** failed) {
  if (close(fd) < 0) {
    // On Linux the fd is released even when close() reports EINTR; retrying could close an fd
    // that another thread has just been given.
    if (errno == EINTR) return 0;
    *failed = "close";
    return -errno;
  }
  return 0;
}

}  // namespace core

namespace {

// V8 may drop the last reference on any thread (a SharedArrayBuffer can be posted to workers),
// and munmap is safe from any thread.
void UnmapBackingStore(void* data, size_t length, void* /*deleter_data*/) {
  if (data != nullptr && length != 0) munmap(data, length);
}

Napi::Value SegmentCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowArgType(env, "The \"name\" argument must be of type string");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.find('\0') != std::string::npos) {
    ThrowArgType(env, "The \"name\" argument must not contain NUL characters");
    return env.Undefined();
  }
  uint64_t bytes;
  if (!ArgBytes(info, 1, "bytes", 0, kMaxSafeInteger, &bytes)) return env.Undefined();
  const char* failed = "memfd_create";
  int fd = core::SegmentCreate(name.c_str(), bytes, &failed);
  if (fd < 0) {
    ThrowErrno(env, -fd, failed);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SegmentMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint64_t bytes;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  // A zero-length mapping is meaningless and mmap rejects it; refuse it as an argument error.
  if (!ArgBytes(info, 1, "bytes", 1, kMaxSafeInteger, &bytes)) return env.Undefined();

  const char* failed = "segmentMap";
  std::string why;
  int rc = core::SegmentValidate(fd, bytes, &failed, &why);
  if (rc < 0) {
    ThrowErrno(env, -rc, why.empty() ? failed : "segmentMap", why);
    return env.Undefined();
  }
  void* addr = nullptr;
  rc = core::SegmentMap(fd, static_cast<size_t>(bytes), &addr, &failed);
  if (rc < 0) {
    ThrowErrno(env, -rc, failed);
    return env.Undefined();
  }

  // Node-API only offers external *ArrayBuffers*, on which Atomics.wait/notify are not allowed;
  // the rings need Atomics, so the SharedArrayBuffer is made with V8 directly. The current
  // HandleScope is the one Node-API opened for this callback, so the Local stays valid until
  // we return it.
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store = v8::SharedArrayBuffer::NewBackingStore(
      addr, static_cast<size_t>(bytes), UnmapBackingStore, nullptr);
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, std::move(store));
  // napi_value is, in Node's implementation, the address of the handle slot of a
  // v8::Local<v8::Value> (see v8impl::JsValueFromV8LocalValue).
  v8::Local<v8::Value> value = sab;
  return Napi::Value(env, reinterpret_cast<napi_value>(*value));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  const char* failed = "close";
  int rc = core::CloseFd(fd, &failed);
  if (rc < 0) ThrowErrno(env, -rc, failed);
  return env.Undefined();
}

}  // namespace

Napi::Object InitSegment(Napi::Env env, Napi::Object exports) {
  exports.Set("segmentCreate", Napi::Function::New(env, SegmentCreate, "segmentCreate"));
  exports.Set("segmentMap", Napi::Function::New(env, SegmentMap, "segmentMap"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  return exports;
}

}  // namespace ivcom
