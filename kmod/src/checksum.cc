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
// The crc32 instruction takes 3 cycles but can start every cycle: one chain of it runs at a
// third of the CPU's pace (~9 GB/s here). Three independent chains over three adjacent blocks
// run at full pace; their CRCs are then joined by "appending" the zeros of the blocks after them
// (a linear map, tabulated once per block length) — Mark Adler's crc32c.c, which is also how
// the Linux kernel and Intel's ISA-L do it. Block lengths: long ones for the bulk, short ones
// for the tail (powers of two, what the zeros operator below is built for).
constexpr size_t kLong = 8192;
constexpr size_t kShort = 256;

using Shift = std::array<std::array<uint32_t, 256>, 4>;

uint32_t Gf2Times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec != 0; vec >>= 1, mat++) {
    if (vec & 1) sum ^= *mat;
  }
  return sum;
}

void Gf2Square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; n++) square[n] = Gf2Times(mat, mat[n]);
}

// The operator that feeds `len` zero bytes (a power of two) through the CRC register.
Shift MakeShift(size_t len) {
  uint32_t odd[32], even[32];
  odd[0] = kPoly;  // one zero bit
  for (int n = 1; n < 32; n++) odd[n] = uint32_t{1} << (n - 1);
  Gf2Square(even, odd);  // two zero bits
  Gf2Square(odd, even);  // four zero bits
  const uint32_t* op = nullptr;
  for (;;) {
    Gf2Square(even, odd);  // doubles: 8 bits (one byte), then 4, 16, ... bytes
    len >>= 1;
    if (len == 0) {
      op = even;
      break;
    }
    Gf2Square(odd, even);
    len >>= 1;
    if (len == 0) {
      op = odd;
      break;
    }
  }
  Shift s{};
  for (uint32_t n = 0; n < 256; n++) {
    s[0][n] = Gf2Times(op, n);
    s[1][n] = Gf2Times(op, n << 8);
    s[2][n] = Gf2Times(op, n << 16);
    s[3][n] = Gf2Times(op, n << 24);
  }
  return s;
}

const Shift kShiftLong = MakeShift(kLong);
const Shift kShiftShort = MakeShift(kShort);

uint32_t Shifted(const Shift& z, uint32_t c) {
  return z[0][c & 0xff] ^ z[1][(c >> 8) & 0xff] ^ z[2][(c >> 16) & 0xff] ^ z[3][c >> 24];
}

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Three chains over blocks [p, p+block), [p+block, ..), [p+2 block, ..), joined.
__attribute__((target("sse4.2"))) uint64_t Three(uint64_t c0, const uint8_t* p, size_t block, const Shift& z) {
  uint64_t c1 = 0, c2 = 0;
  for (const uint8_t* end = p + block; p < end; p += 8) {
    c0 = _mm_crc32_u64(c0, Load64(p));
    c1 = _mm_crc32_u64(c1, Load64(p + block));
    c2 = _mm_crc32_u64(c2, Load64(p + 2 * block));
  }
  c0 = Shifted(z, static_cast<uint32_t>(c0)) ^ c1;
  return Shifted(z, static_cast<uint32_t>(c0)) ^ c2;
}

__attribute__((target("sse4.2"))) uint32_t HardwareCrc(uint32_t c, const uint8_t* p, size_t n) {
  uint64_t c64 = c;
  for (; n >= 3 * kLong; n -= 3 * kLong, p += 3 * kLong) c64 = Three(c64, p, kLong, kShiftLong);
  for (; n >= 3 * kShort; n -= 3 * kShort, p += 3 * kShort) c64 = Three(c64, p, kShort, kShiftShort);
  for (; n >= 8; n -= 8, p += 8) c64 = _mm_crc32_u64(c64, Load64(p));
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
