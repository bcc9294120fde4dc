// Doorbells: the event channel of a ring. An eventfd is rung by the producer only when the
// consumer has said it is going to sleep, and the consumer's event loop watches it with uv_poll,
// so a waiting rank costs ~0 % CPU yet wakes like any other I/O.
#include "common.h"

#include <sched.h>

#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <memory>

namespace ivcom {

namespace core {

int EventfdCreate(const char** failed) {
  // Non-blocking: ring and drain run on the event loop thread and must never stall it.
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    *failed = "eventfd";
    return -errno;
  }
  return fd;
}

int DoorbellRing(int fd, const char** failed) {
  const uint64_t one = 1;
  ssize_t n;
  do n = write(fd, &one, sizeof one);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    // The counter is saturated: the sleeper is already guaranteed to wake.
    if (errno == EAGAIN) return 0;
    *failed = "write";
    return -errno;
  }
  return 0;
}

// Returns the number of rings since the last drain (0 if none), or -errno. The count can exceed
// 2^53 only after that many rings without a drain; precision loss there is harmless.
int64_t DoorbellDrain(int fd, uint64_t* count, const char** failed) {
  ssize_t n;
  do n = read(fd, count, sizeof *count);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) {
      *count = 0;
      return 0;
    }
    *failed = "read";
    return -errno;
  }
  if (n != sizeof *count) {
    *failed = "read";
    return -EIO;
  }
  return 0;
}

}  // namespace core

namespace {

Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* failed = "eventfd";
  int fd = core::EventfdCreate(&failed);
  if (fd < 0) {
    ThrowErrno(env, -fd, failed);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value DoorbellRing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  const char* failed = "write";
  int rc = core::DoorbellRing(fd, &failed);
  if (rc < 0) ThrowErrno(env, -rc, failed);
  return env.Undefined();
}

// Gives the CPU to another runnable thread, if there is one. With more ranks than cores a
// waiting rank that merely spins steals the core its peer needs; one that sleeps pays a full
// kernel wake-up (hundreds of µs on an idle VM). Yielding between polls is the middle way.
Napi::Value CpuYield(const Napi::CallbackInfo& info) {
  sched_yield();
  return info.Env().Undefined();
}

Napi::Value DoorbellDrain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  const char* failed = "read";
  uint64_t count = 0;
  int64_t rc = core::DoorbellDrain(fd, &count, &failed);
  if (rc < 0) {
    ThrowErrno(env, static_cast<int>(-rc), failed);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(count));
}

class FdWatcher;

// The uv handle lives apart from the JS-owned FdWatcher: libuv needs its memory until the close
// callback, which may come after the JS object has been collected (or after the environment has
// started tearing down), so the handle owns itself and merely points back at its watcher.
struct PollHandle {
  uv_poll_t poll;
  FdWatcher* owner = nullptr;  // null once the watcher let go (close, GC, teardown)
  napi_async_cleanup_hook_handle cleanup = nullptr;
  bool closing = false;

  static void OnClose(uv_handle_t* h) {
    PollHandle* self = reinterpret_cast<PollHandle*>(h);
    // Removing the hook is also how an environment that is tearing down learns that this
    // handle is finished; it waits for that before closing the loop.
    if (self->cleanup != nullptr) napi_remove_async_cleanup_hook(self->cleanup);
    delete self;
  }

  void BeginClose() {
    owner = nullptr;
    if (closing) return;
    closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), OnClose);
  }
};

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {
                           InstanceMethod<&FdWatcher::Start>("start"),
                           InstanceMethod<&FdWatcher::Stop>("stop"),
                           InstanceMethod<&FdWatcher::JsRef>("ref"),
                           InstanceMethod<&FdWatcher::JsUnref>("unref"),
                           InstanceMethod<&FdWatcher::Close>("close"),
                       });
  }

  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    int fd;
    if (!ArgFd(info, 0, "fd", &fd)) return;
    if (!info[1].IsFunction()) {
      ThrowArgType(env, "The \"onReadable\" argument must be of type function");
      return;
    }
    if (fd < 0) {
      // libuv asserts on negative fds instead of failing; report it the way the kernel would.
      ThrowErrno(env, EBADF, "uv_poll_init");
      return;
    }
    Napi::Function callback = info[1].As<Napi::Function>();
    Napi::Object self = info.This().As<Napi::Object>();

    // The callback usually closes over the watcher. A strong native reference to it would be a
    // GC root that keeps the watcher alive forever; holding it on the JS object instead keeps
    // the cycle inside the JS heap, and the native side only needs a weak reference.
    napi_property_descriptor desc = {};
    desc.name = GetEnvData(env).watcherCallbackKey.Value();
    desc.value = callback;
    desc.attributes = napi_default;  // not writable, enumerable or configurable
    if (napi_define_properties(env, self, 1, &desc) != napi_ok) return;
    callback_ = Napi::Weak(callback);

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowErrno(env, EINVAL, "napi_get_uv_event_loop");
      return;
    }
    auto handle = std::make_unique<PollHandle>();
    // Note: uv_poll_init puts the fd in O_NONBLOCK mode (on its open file description).
    int rc = uv_poll_init(loop, &handle->poll, fd);
    if (rc < 0) {
      ThrowErrno(env, -rc, "uv_poll_init");
      return;
    }
    handle_ = handle.release();
    handle_->owner = this;
    // Without this, a worker thread that ends with a live watcher would find an open handle when
    // it closes its loop, which Node treats as fatal.
    napi_add_async_cleanup_hook(env, OnEnvTeardown, handle_, &handle_->cleanup);
    context_ = std::make_unique<Napi::AsyncContext>(env, "IvcomFdWatcher", self);
  }

  ~FdWatcher() override {
    // Garbage-collected (or torn down) without close(): release the handle. No JS here, and the
    // keep-alive reference cannot be held (a pinned object is not collected).
    if (handle_ != nullptr) {
      handle_->BeginClose();
      handle_ = nullptr;
    }
  }

 private:
  static void OnPoll(uv_poll_t* poll, int status, int /*events*/) {
    PollHandle* h = reinterpret_cast<PollHandle*>(poll);
    if (h->owner != nullptr) h->owner->Fire(status);
  }

  static void OnEnvTeardown(napi_async_cleanup_hook_handle /*hook*/, void* arg) {
    PollHandle* h = static_cast<PollHandle*>(arg);
    if (h->owner != nullptr) {
      // The environment's finalizers will destroy the watcher; it must not touch the handle.
      h->owner->handle_ = nullptr;
      h->owner->active_ = false;
    }
    h->BeginClose();
  }

  void Fire(int status) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    // Taken before any Unpin so that the object cannot be collected under us.
    Napi::Object self = Value();
    if (status < 0) {
      // libuv has already stopped the handle on a poll error; mirror that. The callback still
      // runs so that the owner's next read surfaces the actual error.
      active_ = false;
      Unpin();
    }
    if (self.IsEmpty()) return;
    Napi::Value fn = callback_.Value();
    if (fn.IsEmpty() || !fn.IsFunction()) return;
    // MakeCallback (not Call) so that this behaves like any other I/O callback: async_hooks see
    // it, and the microtask queue (promise reactions) is drained when it returns. The raw call,
    // because the wrapper throws when it fails: while the environment is being torn down (its
    // last uv_run, before our cleanup hook closes the handle) a doorbell rung by a peer still
    // fires, JS can no longer run, and throwing there is a fatal error (a rank that had finished
    // cleanly died with SIGABRT). Then the call fails with no exception pending: nothing to do.
    napi_value result;
    napi_status st = napi_make_callback(env, *context_, self, fn, 0, nullptr, &result);
    bool pending = false;
    if (st == napi_ok || napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
    napi_value exception;
    if (napi_get_and_clear_last_exception(env, &exception) != napi_ok) return;
    // A worker thread being terminated (process.exit() in a rank of --ranks-as threads, or
    // worker.terminate()) has V8's termination pending, which reads as undefined or null: not an
    // error of the callback, and wrapping it in a Napi::Error needs JS, which is fatal now.
    napi_valuetype type;
    if (napi_typeof(env, exception, &type) != napi_ok || type == napi_undefined || type == napi_null) return;
    napi_fatal_exception(env, exception);
  }

  void Pin() {
    // An active watcher keeps its JS object alive, like a Node socket: dropping the last
    // reference to a started watcher must not silently stop the wake-ups.
    if (!pinned_) {
      Ref();
      pinned_ = true;
    }
  }

  void Unpin() {
    if (pinned_) {
      Unref();
      pinned_ = false;
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ == nullptr || active_) return env.Undefined();
    int rc = uv_poll_start(&handle_->poll, UV_READABLE, OnPoll);
    if (rc < 0) {
      ThrowErrno(env, -rc, "uv_poll_start");
      return env.Undefined();
    }
    active_ = true;
    Pin();
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr && active_) {
      uv_poll_stop(&handle_->poll);
      active_ = false;
    }
    Unpin();
    return info.Env().Undefined();
  }

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    return info.Env().Undefined();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) {
      handle_->BeginClose();
      handle_ = nullptr;
      active_ = false;
    }
    Unpin();
    return info.Env().Undefined();
  }

  PollHandle* handle_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
  bool active_ = false;
  bool pinned_ = false;
};

}  // namespace

Napi::Object InitDoorbell(Napi::Env env, Napi::Object exports) {
  GetEnvData(env).watcherCallbackKey =
      Napi::Persistent(Napi::Symbol::New(env, "ivcom.FdWatcher.onReadable"));
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate, "eventfdCreate"));
  exports.Set("doorbellRing", Napi::Function::New(env, DoorbellRing, "doorbellRing"));
  exports.Set("doorbellDrain", Napi::Function::New(env, DoorbellDrain, "doorbellDrain"));
  exports.Set("cpuYield", Napi::Function::New(env, CpuYield, "cpuYield"));
  exports.Set("FdWatcher", FdWatcher::Define(env));
  return exports;
}

}  // namespace ivcom
