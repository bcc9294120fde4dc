# The addon must never be unloaded: Node dlcloses an addon when the last Environment (e.g. a
# worker thread) that loaded it goes away, yet a SharedArrayBuffer mapped there can outlive it in
# another thread, and its deleter (munmap) is code in this library. Hence -z nodelete.
# ivcom_pgrp is the launcher's helper that starts a rank in a process group of its own without a
# session of its own (kmod/src/pgrp.c says why).
# -ftree-vectorize: -O2 alone (GCC 12) vectorizes only loops whose trip count is a multiple of the
# vector width, which leaves the reduction kernels (kmod/src/reduce.cc) scalar at ~0.6 ns/element.
{
  "targets": [
    {
      "target_name": "ivcom_kmod",
      "sources": [
        "kmod/src/addon.cc",
        "kmod/src/common.cc",
        "kmod/src/segment.cc",
        "kmod/src/grant.cc",
        "kmod/src/doorbell.cc",
        "kmod/src/reduce.cc",
        "kmod/src/copy.cc",
        "kmod/src/cma.cc",
        "kmod/src/unix.cc",
        "kmod/src/tie.cc",
        "kmod/src/checksum.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-O3"],
      "cflags_cc!": ["-std=gnu++17", "-O3"],
      "cflags": ["-O2", "-ftree-vectorize", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++20"],
      "ldflags": ["-Wl,-z,nodelete"]
    },
    {
      "target_name": "ivcom_pgrp",
      "type": "executable",
      "sources": ["kmod/src/pgrp.c"],
      "cflags": ["-O2", "-Wextra"]
    }
  ]
}
