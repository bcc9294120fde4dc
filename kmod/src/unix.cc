// The launcher's socket: how a rank that lost the fds ivrun gave it (a wrapper such as npm or
// npx started it: Node marks every inherited fd close-on-exec) finds its host's agent again.
// An abstract AF_UNIX name, so nothing is left in the file system when the agent goes, and
// SOCK_SEQPACKET, so one message carries the rank's proof, and the answer its new fds.
#include "common.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace ivcom {

namespace core {

// Pending connections the kernel holds while the agent's event loop gets to them (every rank
// of a host may connect at once).
constexpr int kListenBacklog = 1024;

// sun_path[0] == 0: the abstract namespace; the name is the bytes after it, not NUL-terminated.
int AbstractAddress(const std::string& name, sockaddr_un* addr, socklen_t* len) {
  if (name.empty() || name.size() > sizeof addr->sun_path - 1) return -ENAMETOOLONG;
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path + 1, name.data(), name.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return 0;
}

int Listen(const std::string& name, const char** failed) {
  sockaddr_un addr;
  socklen_t len;
  int rc = AbstractAddress(name, &addr, &len);
  if (rc < 0) {
    *failed = "bind";
    return rc;
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *failed = "socket";
    return -errno;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 || listen(fd, kListenBacklog) < 0) {
    int err = errno;
    *failed = "bind";
    close(fd);
    return -err;
  }
  return fd;
}

// -EAGAIN: nobody is waiting.
int Accept(int fd, const char** failed) {
  int c;
  do c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  while (c < 0 && errno == EINTR);
  if (c < 0) {
    *failed = "accept4";
    return -errno;
  }
  return c;
}

int Connect(const std::string& name, const char** failed) {
  sockaddr_un addr;
  socklen_t len;
  int rc = AbstractAddress(name, &addr, &len);
  if (rc < 0) {
    *failed = "connect";
    return rc;
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *failed = "socket";
    return -errno;
  }
  do rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    *failed = "connect";
    close(fd);
    return -err;
  }
  return fd;
}

int StreamPair(int out[2], const char** failed) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) < 0) {
    *failed = "socketpair";
    return -errno;
  }
  return 0;
}

}  // namespace core

namespace {

// A socket made from an abstract name by `make` (Listen or Connect): its fd, or a throw.
Napi::Value SocketByName(const Napi::CallbackInfo& info, int (*make)(const std::string&, const char**)) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    ThrowArgType(env, "The \"name\" argument must be of type string");
    return env.Undefined();
  }
  const char* failed = "socket";
  int rc = make(info[0].As<Napi::String>().Utf8Value(), &failed);
  if (rc < 0) {
    ThrowErrno(env, -rc, failed);
    return env.Undefined();
  }
  return Napi::Number::New(env, rc);
}

Napi::Value UnixListen(const Napi::CallbackInfo& info) { return SocketByName(info, core::Listen); }

Napi::Value UnixConnect(const Napi::CallbackInfo& info) { return SocketByName(info, core::Connect); }

Napi::Value UnixAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  const char* failed = "accept4";
  int rc = core::Accept(fd, &failed);
  if (rc == -EAGAIN || rc == -EWOULDBLOCK) return env.Null();
  if (rc < 0) {
    ThrowErrno(env, -rc, failed);
    return env.Undefined();
  }
  return Napi::Number::New(env, rc);
}

Napi::Value StreamPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  const char* failed = "socketpair";
  int rc = core::StreamPair(sv, &failed);
  if (rc < 0) {
    ThrowErrno(env, -rc, failed);
    return env.Undefined();
  }
  return FdPair(env, sv);
}

}  // namespace

Napi::Object InitUnix(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixAccept", Napi::Function::New(env, UnixAccept, "unixAccept"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("streamPair", Napi::Function::New(env, StreamPair, "streamPair"));
  return exports;
}

}  // namespace ivcom
