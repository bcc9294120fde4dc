// Registration only: each concept lives in its own file.
#include "common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<ivcom::EnvData>(new ivcom::EnvData());
  ivcom::InitSegment(env, exports);
  ivcom::InitGrant(env, exports);
  ivcom::InitDoorbell(env, exports);
  ivcom::InitReduce(env, exports);
  ivcom::InitCopy(env, exports);
  ivcom::InitCma(env, exports);
  ivcom::InitUnix(env, exports);
  ivcom::InitTie(env, exports);
  ivcom::InitChecksum(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ivcom_kmod, Init)
