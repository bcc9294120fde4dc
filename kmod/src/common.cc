#include "common.h"

#include <cerrno>
#include <cmath>
#include <cstring>

namespace ivcom {

namespace {

std::string ErrnoName(int err) {
  // strerrorname_np (glibc >= 2.32) is thread-safe and gives the symbolic name users grep for.
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
  return "errno " + std::to_string(err);
}

void ThrowWithCode(Napi::Env env, Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(env, code));
  error.ThrowAsJavaScriptException();
}

}  // namespace

EnvData& GetEnvData(Napi::Env env) { return *env.GetInstanceData<EnvData>(); }

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  if (err < 0) err = -err;
  // Worker threads may throw concurrently and strerror is not thread-safe; the GNU strerror_r
  // returns a pointer that may or may not be into our buffer.
  char buf[256];
  const char* text = detail.empty() ? strerror_r(err, buf, sizeof buf) : detail.c_str();
  std::string message = std::string(syscall) + " failed: " + text + " (" + ErrnoName(err) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  // The brand of ivcom's errors (transport/errors.ts): with its code, it makes this plain Error
  // an `instanceof NativeError` (and IvcomError) without the addon knowing the JS classes.
  error.Value().DefineProperty(Napi::PropertyDescriptor::Value(Napi::Symbol::For(env, "ivcom.error"), Napi::Boolean::New(env, true)));
  error.Set("name", Napi::String::New(env, "NativeError"));
  ThrowWithCode(env, error, "ERR_IVCOM_NATIVE");
}

void ThrowArgType(Napi::Env env, const std::string& message) {
  ThrowWithCode(env, Napi::TypeError::New(env, message), "ERR_INVALID_ARG_TYPE");
}

void ThrowArgRange(Napi::Env env, const std::string& message) {
  ThrowWithCode(env, Napi::RangeError::New(env, message), "ERR_OUT_OF_RANGE");
}

bool ArgFd(const Napi::CallbackInfo& info, size_t index, const char* name, int* out) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) {
    ThrowArgType(info.Env(), std::string("The \"") + name + "\" argument must be of type number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d == std::trunc(d)) || d < INT32_MIN || d > INT32_MAX) {
    ThrowArgRange(info.Env(), std::string("The \"") + name + "\" argument must be an int32 file descriptor");
    return false;
  }
  *out = static_cast<int>(d);
  return true;
}

bool ArgBytes(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t min,
              uint64_t max, uint64_t* out) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) {
    ThrowArgType(info.Env(), std::string("The \"") + name + "\" argument must be of type number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d == std::trunc(d)) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    ThrowArgRange(info.Env(), std::string("The \"") + name + "\" argument must be an integer in [" +
                                  std::to_string(min) + ", " + std::to_string(max) + "]");
    return false;
  }
  *out = static_cast<uint64_t>(d);
  return true;
}

bool ArgTypedArray(const Napi::CallbackInfo& info, size_t index, const char* name, TypedView* out) {
  if (!info[index].IsTypedArray()) {
    ThrowArgType(info.Env(), std::string("The \"") + name + "\" argument must be a typed array");
    return false;
  }
  void* data = nullptr;
  napi_status st = napi_get_typedarray_info(info.Env(), info[index], &out->type, &out->length, &data, nullptr, nullptr);
  if (st != napi_ok || (data == nullptr && out->length > 0)) {
    ThrowArgType(info.Env(), std::string("The \"") + name + "\" argument's memory could not be read");
    return false;
  }
  out->data = static_cast<uint8_t*>(data);
  return true;
}

size_t ElementBytes(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;  // float64, bigint64, biguint64
  }
}

Napi::Array FdPair(Napi::Env env, const int sv[2]) {
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t{0}, Napi::Number::New(env, sv[0]));
  result.Set(uint32_t{1}, Napi::Number::New(env, sv[1]));
  return result;
}

}  // namespace ivcom
