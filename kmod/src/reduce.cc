// Element-wise reduction kernels for the collectives: out[off+i] = a[off+i] (op) b[bOff+i].
// V8's code for such a loop runs at 2-4 ns per element here (scalar loads with checks); the
// compiler's vectorized loop runs at memory speed. Results are bit-for-bit those of the JS
// kernels in runtime/collectives/op.ts (integer kinds wrap as typed arrays store; float MIN/MAX
// follow Math.min/Math.max: NaN wins, -0 < +0), which stay the fallback and the reference.
// Kinds or ops not handled here (Uint8ClampedArray, LAND, LOR) return false: use JS.
#include "common.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace ivcom {

namespace {

// The op numbers of runtime/collectives/op.ts's NATIVE_OPS.
enum Op : int32_t { kSum = 0, kProd = 1, kMin = 2, kMax = 3, kBand = 4, kBor = 5, kBxor = 6 };

template <typename T>
inline T WrapAdd(T x, T y) {
  using U = std::make_unsigned_t<std::conditional_t<(sizeof(T) < 4), int32_t, T>>;
  return static_cast<T>(static_cast<U>(x) + static_cast<U>(y));
}

template <typename T>
inline T WrapMul(T x, T y) {
  using U = std::make_unsigned_t<std::conditional_t<(sizeof(T) < 4), int32_t, T>>;
  return static_cast<T>(static_cast<U>(x) * static_cast<U>(y));
}

// NaN: x86's default NaN (sign set), which is what V8's Math.min/max give here. Any NaN is
// equally NaN to JS; matching the bits just keeps results identical wherever computed.
template <typename F>
inline F JsMin(F x, F y) {
  if (x < y) return x;
  if (y < x) return y;
  if (x != x || y != y) return -std::numeric_limits<F>::quiet_NaN();
  return std::signbit(x) ? x : y;  // equal: only +0/-0 can differ
}

template <typename F>
inline F JsMax(F x, F y) {
  if (x > y) return x;
  if (y > x) return y;
  if (x != x || y != y) return -std::numeric_limits<F>::quiet_NaN();
  return std::signbit(x) ? y : x;
}

// The loops promise the compiler that `out` and the operands do not overlap (__restrict__), which
// is what lets it vectorize them; `out` may be `a` exactly (in place, ReduceInto allows no other
// overlap), so that case gets a loop of its own over two arrays. Not inlined: inside
// ReduceInto's body GCC 12 left the same loops scalar.
template <typename T, typename F>
[[gnu::noinline]] void Apart(T* __restrict__ out, const T* __restrict__ a, const T* __restrict__ b, size_t n, F f) {
  for (size_t i = 0; i < n; i++) out[i] = f(a[i], b[i]);
}

template <typename T, typename F>
[[gnu::noinline]] void InPlace(T* __restrict__ out, const T* __restrict__ b, size_t n, F f) {
  for (size_t i = 0; i < n; i++) out[i] = f(out[i], b[i]);
}

template <typename T, typename F>
void Each(T* out, const T* a, const T* b, size_t n, F f) {
  if (out == a) {
    InPlace(out, b, n, f);
  } else {
    Apart(out, a, b, n, f);
  }
}

// One loop per (op, type), each simple enough for the compiler to vectorize where it can.
template <typename T>
bool Run(int32_t op, T* out, const T* a, const T* b, size_t n) {
  constexpr bool kFloat = std::is_floating_point_v<T>;
  switch (op) {
    case kSum:
      if constexpr (kFloat) {
        Each(out, a, b, n, [](T x, T y) { return x + y; });
      } else {
        Each(out, a, b, n, [](T x, T y) { return WrapAdd(x, y); });
      }
      return true;
    case kProd:
      if constexpr (kFloat) {
        Each(out, a, b, n, [](T x, T y) { return x * y; });
      } else {
        Each(out, a, b, n, [](T x, T y) { return WrapMul(x, y); });
      }
      return true;
    case kMin:
      if constexpr (kFloat) {
        Each(out, a, b, n, [](T x, T y) { return JsMin(x, y); });
      } else {
        Each(out, a, b, n, [](T x, T y) { return y < x ? y : x; });
      }
      return true;
    case kMax:
      if constexpr (kFloat) {
        Each(out, a, b, n, [](T x, T y) { return JsMax(x, y); });
      } else {
        Each(out, a, b, n, [](T x, T y) { return y > x ? y : x; });
      }
      return true;
    case kBand:
    case kBor:
    case kBxor:
      if constexpr (kFloat) {
        return false;
      } else {
        if (op == kBand) {
          Each(out, a, b, n, [](T x, T y) { return static_cast<T>(x & y); });
        } else if (op == kBor) {
          Each(out, a, b, n, [](T x, T y) { return static_cast<T>(x | y); });
        } else {
          Each(out, a, b, n, [](T x, T y) { return static_cast<T>(x ^ y); });
        }
        return true;
      }
  }
  return false;
}

// An element index or count: what a JS number holds exactly (common.h's byte-count reader).
bool GetIndex(const Napi::CallbackInfo& info, size_t i, const char* name, size_t* out) {
  uint64_t v;
  if (!ArgBytes(info, i, name, 0, kMaxSafeInteger, &v)) return false;
  *out = static_cast<size_t>(v);
  return true;
}

template <typename T>
bool Dispatch(int32_t op, const TypedView& o, const TypedView& a, const TypedView& b, size_t off, size_t bOff, size_t n) {
  return Run<T>(op, reinterpret_cast<T*>(o.data) + off, reinterpret_cast<const T*>(a.data) + off,
                reinterpret_cast<const T*>(b.data) + bOff, n);
}

// reduceInto(op, out, a, off, b, bOff, n) -> boolean: true when done, false when this op/kind
// (or an overlap of b with out) is left to the JS kernel. Arguments out of range throw.
Napi::Value ReduceInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    ThrowArgType(env, "The \"op\" argument must be of type number");
    return env.Undefined();
  }
  int32_t op = info[0].As<Napi::Number>().Int32Value();
  TypedView o, a, b;
  size_t off, bOff, n;
  if (!ArgTypedArray(info, 1, "out", &o) || !ArgTypedArray(info, 2, "a", &a) || !GetIndex(info, 3, "off", &off) ||
      !ArgTypedArray(info, 4, "b", &b) || !GetIndex(info, 5, "bOff", &bOff) || !GetIndex(info, 6, "n", &n)) {
    return env.Undefined();
  }
  if (o.type != a.type || o.type != b.type) {
    ThrowArgType(env, "reduceInto needs three typed arrays of one kind");
    return env.Undefined();
  }
  if (off > o.length || n > o.length - off || off > a.length || n > a.length - off || bOff > b.length ||
      n > b.length - bOff) {
    ThrowArgRange(env, "reduceInto: a range runs past the end of its array");
    return env.Undefined();
  }
  // Uint8ClampedArray: clamping stays in JS.
  if (o.type == napi_uint8_clamped_array) return Napi::Boolean::New(env, false);
  const size_t elem = ElementBytes(o.type);
  // The JS loop reads b[i] after writing out[i-1]; a vectorized loop does not. Only `a` may
  // share memory with `out` (exactly: in place); any other overlap goes to JS.
  const uint8_t* ob = o.data + off * elem;
  const uint8_t* oe = ob + n * elem;
  const uint8_t* bb = b.data + bOff * elem;
  const uint8_t* be = bb + n * elem;
  const uint8_t* ab = a.data + off * elem;
  if (n > 0 && ((bb < oe && ob < be) || (ab != ob && ab < oe && ob < ab + n * elem))) {
    return Napi::Boolean::New(env, false);
  }
  bool done = false;
  switch (o.type) {
    case napi_int8_array: done = Dispatch<int8_t>(op, o, a, b, off, bOff, n); break;
    case napi_uint8_array: done = Dispatch<uint8_t>(op, o, a, b, off, bOff, n); break;
    case napi_int16_array: done = Dispatch<int16_t>(op, o, a, b, off, bOff, n); break;
    case napi_uint16_array: done = Dispatch<uint16_t>(op, o, a, b, off, bOff, n); break;
    case napi_int32_array: done = Dispatch<int32_t>(op, o, a, b, off, bOff, n); break;
    case napi_uint32_array: done = Dispatch<uint32_t>(op, o, a, b, off, bOff, n); break;
    case napi_float32_array: done = Dispatch<float>(op, o, a, b, off, bOff, n); break;
    case napi_float64_array: done = Dispatch<double>(op, o, a, b, off, bOff, n); break;
    case napi_bigint64_array: done = Dispatch<int64_t>(op, o, a, b, off, bOff, n); break;
    case napi_biguint64_array: done = Dispatch<uint64_t>(op, o, a, b, off, bOff, n); break;
    default: break;
  }
  return Napi::Boolean::New(env, done);
}

}  // namespace

Napi::Object InitReduce(Napi::Env env, Napi::Object exports) {
  exports.Set("reduceInto", Napi::Function::New(env, ReduceInto, "reduceInto"));
  return exports;
}

}  // namespace ivcom
