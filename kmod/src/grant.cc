// Grants: handing fds (segments, doorbells) to exactly the processes that should hold them.
//
// SOCK_SEQPACKET keeps message boundaries (one grant = one message, fds and bytes together) and
// reports the peer's exit as a 0-byte read, which the launcher uses as a liveness signal.
#include "common.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ivcom {

namespace core {

// A host group's grant: its segment and one doorbell per rank of the host (transport/ivcom/group.ts).
constexpr size_t kMaxGrantFds = 64;
constexpr size_t kMaxGrantBytes = 4096;

int SocketPair(int out[2], const char** failed) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, out) < 0) {
    *failed = "socketpair";
    return -errno;
  }
  return 0;
}

int SendFds(int sock, const int* fds, size_t nfds, const void* data, size_t len,
            const char** failed) {
  if (nfds > kMaxGrantFds || len > kMaxGrantBytes) {
    *failed = "sendmsg";
    return -EINVAL;
  }
  iovec iov;
  iov.iov_base = const_cast<void*>(data);
  iov.iov_len = len;
  msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxGrantFds)];
  if (nfds > 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  // MSG_NOSIGNAL: a peer that died must surface as EPIPE, not kill us with SIGPIPE.
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    *failed = "sendmsg";
    return -errno;
  }
  // A seqpacket send is all-or-nothing, so a short count would be a kernel contract violation.
  if (static_cast<size_t>(n) != len) {
    *failed = "sendmsg";
    return -EMSGSIZE;
  }
  return 0;
}

struct Received {
  size_t len = 0;
  std::vector<int> fds;
  bool eof = false;
  bool empty = false;  // EAGAIN: nothing queued
};

void CloseAll(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

// The peer may be hostile: every cmsg header is bounds-checked against the control buffer
// before its payload is read, and on any anomaly the fds that did arrive are closed so that
// they cannot pile up in our table.
int RecvFds(int sock, void* buf, size_t cap, Received* out, const char** failed) {
  iovec iov;
  iov.iov_base = buf;
  iov.iov_len = cap;
  msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxGrantFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;

  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      out->empty = true;
      return 0;
    }
    *failed = "recvmsg";
    return -errno;
  }

  const char* end = control + msg.msg_controllen;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    const char* start = reinterpret_cast<const char*>(c);
    if (c->cmsg_len < CMSG_LEN(0) || c->cmsg_len > static_cast<size_t>(end - start)) {
      CloseAll(out->fds);
      *failed = "recvmsg";
      return -EPROTO;
    }
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t payload = c->cmsg_len - CMSG_LEN(0);
    size_t count = payload / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
      out->fds.push_back(fd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    // More fds than we accept were sent; the kernel installed those that fit.
    CloseAll(out->fds);
    *failed = "recvmsg";
    return -EMSGSIZE;
  }
  if (msg.msg_flags & MSG_TRUNC) {
    // A grant larger than the protocol allows: the tail is gone, so the message is unusable.
    CloseAll(out->fds);
    *failed = "recvmsg";
    return -EMSGSIZE;
  }
  out->len = static_cast<size_t>(n);
  if (n == 0 && out->fds.empty()) {
    // On seqpacket, 0 is both "peer closed" and "peer sent an empty message"; the socket's
    // hang-up state tells them apart.
    pollfd p{sock, POLLRDHUP, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP))) out->eof = true;
  }
  return 0;
}

}  // namespace core

namespace {

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  const char* failed = "socketpair";
  int rc = core::SocketPair(sv, &failed);
  if (rc < 0) {
    ThrowErrno(env, -rc, failed);
    return env.Undefined();
  }
  return FdPair(env, sv);
}

Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock;
  if (!ArgFd(info, 0, "sock", &sock)) return env.Undefined();
  if (!info[1].IsArray()) {
    ThrowArgType(env, "The \"fds\" argument must be an array of numbers");
    return env.Undefined();
  }
  Napi::Array arr = info[1].As<Napi::Array>();
  uint32_t nfds = arr.Length();
  if (nfds > core::kMaxGrantFds) {
    ThrowArgRange(env, "The \"fds\" argument must hold at most " +
                           std::to_string(core::kMaxGrantFds) + " file descriptors");
    return env.Undefined();
  }
  int fds[core::kMaxGrantFds];
  for (uint32_t i = 0; i < nfds; i++) {
    Napi::Value v = arr.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= INT32_MAX) || d != std::trunc(d)) {
      ThrowArgType(env, "The \"fds\" argument must hold non-negative int32 file descriptors");
      return env.Undefined();
    }
    fds[i] = static_cast<int>(d);
  }
  if (!info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowArgType(env, "The \"data\" argument must be a Uint8Array");
    return env.Undefined();
  }
  Napi::Uint8Array data = info[2].As<Napi::Uint8Array>();
  if (data.ByteLength() > core::kMaxGrantBytes) {
    ThrowArgRange(env, "The \"data\" argument must be at most " +
                           std::to_string(core::kMaxGrantBytes) + " bytes");
    return env.Undefined();
  }
  const char* failed = "sendmsg";
  int rc = core::SendFds(sock, fds, nfds, data.Data(), data.ByteLength(), &failed);
  if (rc < 0) ThrowErrno(env, -rc, failed);
  return env.Undefined();
}

Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock;
  if (!ArgFd(info, 0, "sock", &sock)) return env.Undefined();
  char buf[core::kMaxGrantBytes];
  core::Received r;
  const char* failed = "recvmsg";
  int rc = core::RecvFds(sock, buf, sizeof buf, &r, &failed);
  if (rc < 0) {
    ThrowErrno(env, -rc, failed,
               rc == -EMSGSIZE ? "grant exceeds 64 fds or 4096 bytes; received fds were closed"
               : rc == -EPROTO ? "malformed control message; received fds were closed"
                               : "");
    return env.Undefined();
  }
  if (r.empty) return env.Null();
  Napi::Object result = Napi::Object::New(env);
  result.Set("data", Napi::Buffer<char>::Copy(env, buf, r.len));
  Napi::Array fds = Napi::Array::New(env, r.fds.size());
  for (size_t i = 0; i < r.fds.size(); i++) {
    fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, r.fds[i]));
  }
  result.Set("fds", fds);
  result.Set("eof", Napi::Boolean::New(env, r.eof));
  return result;
}

}  // namespace

Napi::Object InitGrant(Napi::Env env, Napi::Object exports) {
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  exports.Set("sendFds", Napi::Function::New(env, SendFds, "sendFds"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds, "recvFds"));
  return exports;
}

}  // namespace ivcom
