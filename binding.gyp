{
  # The core addon only (OpenBLAS). The LibTorch addon is built by CMakeLists.txt with cmake-js:
  # never describe one addon in both files.
  "targets": [
    {
      "target_name": "handgrad",
      "sources": ["native/addon/addon.cc", "native/addon/stack.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      # -ffp-contract=off: a multiply and an add stay two roundings wherever a build enables FMA (the
      # exact mode fuses only where LibTorch's kernels do, with std::fma).
      # -fno-math-errno: std::sqrt becomes the sqrtsd/sqrtpd instruction, so the Adam/AdamW update
      # loops vectorize (sqrt is correctly rounded either way: the bits do not change, test/41).
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno"],
      # Sleef: the exact mode's vectorized exp/log/tanh, the library LibTorch links (native/core/exact*.h).
      "libraries": ["-lopenblas", "-lsleef"]
    }
  ]
}
