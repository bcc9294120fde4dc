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
#include <ctime>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// memmove, but by lines where rep movsb would be slow.
void CopyCached(uint8_t* d, const uint8_t* s, size_t n) {
  if (SlowForRepMovsb(d, s, n)) {
    CopyByLines(d, s, n);
  } else if (n > 0) {
    std::memmove(d, s, n);
  }
}

// The (dst, dstOff, src, srcOff, n) arguments of both copies, checked; false once a JS error is
// pending. Byte counts whatever the arrays' kinds.
bool ArgRanges(const Napi::CallbackInfo& info, const char* fn, uint8_t** to, const uint8_t** from, size_t* bytes) {
  TypedView d, s;
  uint64_t dOff, sOff, n;
  if (!ArgTypedArray(info, 0, "dst", &d) || !ArgBytes(info, 1, "dstOff", 0, kMaxSafeInteger, &dOff) ||
      !ArgTypedArray(info, 2, "src", &s) || !ArgBytes(info, 3, "srcOff", 0, kMaxSafeInteger, &sOff) ||
      !ArgBytes(info, 4, "n", 0, kMaxSafeInteger, &n)) {
    return false;
  }
  const uint64_t dBytes = d.length * ElementBytes(d.type);
  const uint64_t sBytes = s.length * ElementBytes(s.type);
  if (dOff > dBytes || n > dBytes - dOff || sOff > sBytes || n > sBytes - sOff) {
    ThrowArgRange(info.Env(), std::string(fn) + ": a range runs past the end of its array");
    return false;
  }
  *to = d.data + dOff;
  *from = s.data + sOff;
  *bytes = n;
  return true;
}

// copyBytes(dst, dstOff, src, srcOff, n): memmove; ranges checked.
Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  uint8_t* to;
  const uint8_t* from;
  size_t n;
  if (ArgRanges(info, "copyBytes", &to, &from, &n)) CopyCached(to, from, n);
  return info.Env().Undefined();
}

// copyToPeer: the copy of a payload into a segment the peer reads, choosing per copy between
// cached stores (memmove) and streaming (non-temporal) stores from what each has cost lately.
// Cached stores must first take every line from the reader's cache; on this VM that transfer
// runs in phases at ~3 GB/s instead of 30+ (a 64 KiB stream through a 2 MiB ring, C and Node
// alike), while streaming stores write around the caches at ~30 GB/s either way and cost the
// reader a read from memory (docs/performance.md, stop 30). The caller keeps the choice's state
// in private memory, one per ring (Float64Array, kChoiceWords):
//   [0] cached stores, ns per KiB (moving average; 0: not measured yet)
//   [1] streaming stores, ns per KiB (the same)
//   [2] copies left before the next exploring copy (one that goes the other way)
//   [3] copies between exploring copies, kExploreMin..kExploreMax
constexpr size_t kChoiceWords = 4;
// Below this a copy is too short to time against clock_gettime (~25 ns) and stays in the
// reader's reach cheaply anyway: memmove.
constexpr size_t kChoiceMinCopy = 16384;
// An exploring copy goes the other way so that a phase change is seen. Each one that confirms
// the choice doubles the gap to the next, up to kExploreMax; one that overturns it brings the gap
// back to kExploreMin. An exploring copy costs the slower way's time: at 1 in 64 that was ~9 % of
// a stream in a slow phase (cached ~3 GB/s beside streaming ~20) and ~3 % in a fast one; at 1 in
// 1024 it is under 1 %, and a phase change is still seen within 1024 copies (64 MiB of 64 KiB
// messages, a few ms of a stream).
constexpr double kExploreMin = 64;
constexpr double kExploreMax = 1024;
// Streaming is taken only when cached stores cost this many times more: streaming leaves the
// payload in memory rather than in a cache the reader can take it from, which the writer's own
// timing cannot see (a 2x margin: measured 38 vs 31 GB/s writer-side where the stream as a whole
// ran 37 vs 17 GB/s, cached ahead; 3 vs 31 where it ran 3 vs 20, streaming ahead).
constexpr double kStreamMargin = 2.0;
// Weight of a new timing in the moving average, and how far above the average one may count: a
// copy the scheduler interrupted must not flip the choice, a real phase change does in ~8 copies.
constexpr double kEwmaWeight = 0.125;
constexpr double kSampleCap = 4.0;

double NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

#if defined(__SSE2__)
constexpr bool kCanStream = true;

void CopyStreaming(uint8_t* d, const uint8_t* s, size_t n) {
  // Streaming stores want 16-byte aligned destinations: the head up to a line goes by memcpy.
  size_t head = (kLineBytes - (reinterpret_cast<uintptr_t>(d) & (kLineBytes - 1))) & (kLineBytes - 1);
  if (head > n) head = n;
  std::memcpy(d, s, head);
  size_t i = head;
  for (; i + kLineBytes <= n; i += kLineBytes) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  if (i < n) std::memcpy(d + i, s + i, n - i);
  // Streaming stores are weakly ordered even on x86: without this fence the record's publish
  // (ring-tx.ts publish(), the release store of the next record's magic word that the reader
  // polls) could become visible before the payload it covers.
  _mm_sfence();
}
#else
constexpr bool kCanStream = false;
void CopyStreaming(uint8_t* d, const uint8_t* s, size_t n) { std::memmove(d, s, n); }
#endif

bool PreferStreaming(double cached, double streaming) { return cached > streaming * kStreamMargin; }

void CopyChosen(uint8_t* d, const uint8_t* s, size_t n, double* choice) {
  const double cached = choice[0];
  const double streaming = choice[1];
  bool stream;
  bool exploring = false;
  bool preferred = false;
  if (cached <= 0) {
    stream = false;
  } else if (streaming <= 0) {
    stream = true;
  } else {
    preferred = PreferStreaming(cached, streaming);
    const double left = choice[2] - 1;
    exploring = !(left > 0);  // also a state that was never set (0) or is not a number
    choice[2] = left;
    stream = exploring ? !preferred : preferred;
  }
  const double t0 = NowNs();
  if (stream) {
    CopyStreaming(d, s, n);
  } else {
    CopyCached(d, s, n);
  }
  double perKiB = (NowNs() - t0) * 1024.0 / static_cast<double>(n);
  double& avg = choice[stream ? 1 : 0];
  if (exploring) {
    // The way not taken lately: its average is old, this copy is what it costs now. (An
    // interrupted exploring copy only makes the choice look right: it holds, and is looked at
    // again after the next gap.)
    avg = perKiB;
    const bool held = PreferStreaming(choice[0], choice[1]) == preferred;
    const double gap = choice[3] >= kExploreMin ? choice[3] : kExploreMin;
    choice[3] = held ? (gap * 2 < kExploreMax ? gap * 2 : kExploreMax) : kExploreMin;
    choice[2] = choice[3];
    return;
  }
  if (avg > 0 && perKiB > avg * kSampleCap) perKiB = avg * kSampleCap;
  avg = avg > 0 ? avg + kEwmaWeight * (perKiB - avg) : perKiB;
  // Both ways measured for the first time: the gaps start.
  if (stream && streaming <= 0) choice[2] = choice[3] = kExploreMin;
}

// copyToPeer(dst, dstOff, src, srcOff, n, choice): as copyBytes; `choice` (Float64Array of
// kChoiceWords, private) is read and updated. Overlapping ranges are copyBytes' business.
Napi::Value CopyToPeer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* to;
  const uint8_t* from;
  size_t n;
  TypedView c;
  if (!ArgRanges(info, "copyToPeer", &to, &from, &n) || !ArgTypedArray(info, 5, "choice", &c)) return env.Undefined();
  if (c.type != napi_float64_array || c.length < kChoiceWords) {
    ThrowArgType(env, "copyToPeer: choice must be a Float64Array of at least copyChoiceWords elements");
    return env.Undefined();
  }
  const bool apart = to + n <= from || from + n <= to;
  if (kCanStream && apart && n >= kChoiceMinCopy) {
    CopyChosen(to, from, n, reinterpret_cast<double*>(c.data));
  } else {
    CopyCached(to, from, n);
  }
  return env.Undefined();
}

}  // namespace

Napi::Object InitCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copyBytes", Napi::Function::New(env, CopyBytes, "copyBytes"));
  exports.Set("copyToPeer", Napi::Function::New(env, CopyToPeer, "copyToPeer"));
  exports.Set("copyChoiceWords", Napi::Number::New(env, static_cast<double>(kChoiceWords)));
  return exports;
}

}  // namespace ivcom
