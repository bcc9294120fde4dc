// Shared by the per-concept files: the error convention and argument checks.
//
// Convention: core functions (namespace ivcom::core) never throw and never touch JS. They return
// a value >= 0 on success or -errno on failure, and name the failing system call through an
// out-parameter so that the wrapper can report it. Only the N-API wrappers throw.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace ivcom {

// The exports object gets these from every concept's Init.
Napi::Object InitSegment(Napi::Env env, Napi::Object exports);
Napi::Object InitGrant(Napi::Env env, Napi::Object exports);
Napi::Object InitDoorbell(Napi::Env env, Napi::Object exports);
Napi::Object InitReduce(Napi::Env env, Napi::Object exports);
Napi::Object InitCopy(Napi::Env env, Napi::Object exports);
Napi::Object InitCma(Napi::Env env, Napi::Object exports);
Napi::Object InitUnix(Napi::Env env, Napi::Object exports);
Napi::Object InitTie(Napi::Env env, Napi::Object exports);
Napi::Object InitChecksum(Napi::Env env, Napi::Object exports);

// Per-environment state (one per main thread / worker). Node-API has a single instance-data slot
// per addon, so every concept that needs per-env state adds a field here; addon.cc owns it.
struct EnvData {
  // Key of the non-enumerable property through which an FdWatcher's JS object holds its
  // callback (see doorbell.cc for why not a strong native reference).
  Napi::Reference<Napi::Symbol> watcherCallbackKey;
};
EnvData& GetEnvData(Napi::Env env);

// Throws `Error{ code: 'ERR_IVCOM_NATIVE', errno, syscall }`. `err` is positive. With an empty
// `detail` the message is "<syscall> failed: <strerror> (<ENAME>)"; otherwise `detail` replaces
// the strerror text, for errors that the addon itself diagnoses (e.g. a hostile segment).
void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& detail = {});

// Programming errors (wrong argument types/ranges) are TypeError/RangeError with Node's usual
// codes, not ERR_IVCOM_NATIVE: they are bugs in the caller, not conditions of the system.
void ThrowArgType(Napi::Env env, const std::string& message);

// [sv[0], sv[1]] as a JS array (a socket pair's two ends).
Napi::Array FdPair(Napi::Env env, const int sv[2]);
void ThrowArgRange(Napi::Env env, const std::string& message);

// Reads an fd argument: any integral number in int32 range. Negative values are passed through
// so that the system call itself reports EBADF, as Node's fs does.
bool ArgFd(const Napi::CallbackInfo& info, size_t index, const char* name, int* out);

// Reads a byte count: an integral number in [min, max].
bool ArgBytes(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t min,
              uint64_t max, uint64_t* out);

// A typed-array argument: its kind, its length in elements and its first element. Taken from
// napi_get_typedarray_info directly, which also covers SharedArrayBuffer-backed arrays (going
// through Napi::TypedArray::ArrayBuffer().Data() does not: it gave a null base for them).
struct TypedView {
  napi_typedarray_type type;
  size_t length;
  uint8_t* data;
};
bool ArgTypedArray(const Napi::CallbackInfo& info, size_t index, const char* name, TypedView* out);

// Bytes per element of a typed-array kind.
size_t ElementBytes(napi_typedarray_type type);

// Largest integer a JS number holds exactly; sizes beyond it cannot round-trip through JS.
constexpr uint64_t kMaxSafeInteger = (uint64_t{1} << 53) - 1;

}  // namespace ivcom
