// crc32c: CRC-32C (Castagnoli), the end-to-end check of `ivrun --verify`. Castagnoli because
// x86-64 computes it in one instruction (SSE4.2 crc32, 8 bytes per instruction), which no other
// common 32-bit CRC has; and a CRC, unlike a sum, catches every burst of up to 32 flipped bits,
// what a stray store into shared memory looks like. Whether the CPU has the instruction is asked
// once, at load (a binary built here may run on an older CPU); without it a table does the work
// eight bytes at a time (slicing-by-8).
#include "common.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ivcom {

namespace core {

namespace {

// The reflected Castagnoli polynomial 0x1EDC6F41.
constexpr uint32_t kPoly = 0x82F63B78u;

using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1) ? kPoly : 0);
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    for (size_t s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
  return t;
}

constexpr Tables kTables = MakeTables();

uint32_t TableCrc(uint32_t c, const uint8_t* p, size_t n) {
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
        kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t HardwareCrc(uint32_t c, const uint8_t* p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c64);
  while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

bool CpuHasCrc() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
#else
uint32_t HardwareCrc(uint32_t c, const uint8_t* p, size_t n) { return TableCrc(c, p, n); }
bool CpuHasCrc() { return false; }
#endif

const bool kHardware = CpuHasCrc();

}  // namespace

// `seed` is the CRC of the bytes before these (0 for none), so a message in several parts is
// checked as one: Crc32c(b, Crc32c(a)) == Crc32c(a ++ b).
uint32_t Crc32c(const uint8_t* p, size_t n, uint32_t seed) {
  const uint32_t c = ~seed;
  return ~(kHardware ? HardwareCrc(c, p, n) : TableCrc(c, p, n));
}

bool Crc32cHardware() { return kHardware; }

}  // namespace core

namespace {

// crc32c(view, seed = 0): the CRC-32C of a typed array's bytes, continuing from `seed`.
Napi::Value Crc32c(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TypedView v;
  if (!ArgTypedArray(info, 0, "data", &v)) return env.Undefined();
  uint64_t seed = 0;
  if (info.Length() > 1 && !info[1].IsUndefined() && !ArgBytes(info, 1, "seed", 0, UINT32_MAX, &seed)) {
    return env.Undefined();
  }
  const size_t n = v.length * ElementBytes(v.type);
  return Napi::Number::New(env, core::Crc32c(v.data, n, static_cast<uint32_t>(seed)));
}

}  // namespace

Napi::Object InitChecksum(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, Crc32c, "crc32c"));
  exports.Set("crc32cHardware", Napi::Boolean::New(env, core::Crc32cHardware()));
  return exports;
}

}  // namespace ivcom
