// copyBytes: memmove between two typed arrays. V8 copies into or out of a SharedArrayBuffer
// (TypedArray.prototype.set, and Buffer.copy, which is built on it) element by element with
// relaxed atomics, because another thread may be writing there: 2.5x slower than into private
// memory here, even within the cache (256 KiB: 25 us vs 10 us). The shared-memory rings copy
// every payload byte in and out of a segment, so they call this for all but short copies.
// Reading memory the peer may be writing is fine for the copy itself: whatever bytes it sees
// are only data to the reader, whose indices and lengths come from private state.
#include "common.h"

#include <cstdint>
#include <cstring>

namespace ivcom {

namespace {

// glibc's memmove copies from a few KiB up with `rep movsb`, which this CPU runs ~15x slower
// (2.2 GB/s against 26-43, 64 KiB, docs/performance.md stop 29) when the destination lies 1-15
// bytes past the source modulo 4 KiB; a ring's record headers shift its payloads by such
// offsets from one message to the next. Those copies go by 64-byte moves (the compiler's vector
// moves) instead, up to kAliasBytes past: 16-63 bytes past still cost ~40 %.
constexpr uintptr_t kPageBytes = 4096;
constexpr uintptr_t kAliasBytes = 64;
constexpr size_t kLineBytes = 64;
/** Below this glibc does not use rep movsb (its threshold is 2-8 KiB by vector width). */
constexpr size_t kAliasMinCopy = 2048;

bool SlowForRepMovsb(const uint8_t* d, const uint8_t* s, size_t n) {
  const uintptr_t delta = (reinterpret_cast<uintptr_t>(d) - reinterpret_cast<uintptr_t>(s)) & (kPageBytes - 1);
  // Overlapping ranges keep memmove's semantics.
  const bool apart = d + n <= s || s + n <= d;
  return n >= kAliasMinCopy && delta != 0 && delta < kAliasBytes && apart;
}

void CopyByLines(uint8_t* d, const uint8_t* s, size_t n) {
  size_t i = 0;
  for (; i + kLineBytes <= n; i += kLineBytes) __builtin_memcpy(d + i, s + i, kLineBytes);
  if (i < n) std::memcpy(d + i, s + i, n - i);
}

// copyBytes(dst, dstOff, src, srcOff, n): bytes, whatever the arrays' kinds; ranges checked.
Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TypedView d, s;
  uint64_t dOff, sOff, n;
  if (!ArgTypedArray(info, 0, "dst", &d) || !ArgBytes(info, 1, "dstOff", 0, kMaxSafeInteger, &dOff) ||
      !ArgTypedArray(info, 2, "src", &s) || !ArgBytes(info, 3, "srcOff", 0, kMaxSafeInteger, &sOff) ||
      !ArgBytes(info, 4, "n", 0, kMaxSafeInteger, &n)) {
    return env.Undefined();
  }
  const uint64_t dBytes = d.length * ElementBytes(d.type);
  const uint64_t sBytes = s.length * ElementBytes(s.type);
  if (dOff > dBytes || n > dBytes - dOff || sOff > sBytes || n > sBytes - sOff) {
    ThrowArgRange(env, "copyBytes: a range runs past the end of its array");
    return env.Undefined();
  }
  uint8_t* to = d.data + dOff;
  const uint8_t* from = s.data + sOff;
  if (SlowForRepMovsb(to, from, n)) {
    CopyByLines(to, from, n);
  } else if (n > 0) {
    std::memmove(to, from, n);
  }
  return env.Undefined();
}

}  // namespace

Napi::Object InitCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copyBytes", Napi::Function::New(env, CopyBytes, "copyBytes"));
  return exports;
}

}  // namespace ivcom
