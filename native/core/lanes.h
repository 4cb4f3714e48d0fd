// BLAS lanes: private single-threaded copies of OpenBLAS, one per thread that multiplies at a time,
// so that handgrad splits its products between its own threads (blas.h) instead of handing each one
// to OpenBLAS's thread pool.
//
// Why: OpenBLAS's thread count is one process-wide setting that LibTorch shares (and the exact
// mode needs at PyTorch's default), and its threaded GEMM synchronises its threads inside every
// product. Measured on the 2-core VM (C prototype, the two-layer step, each contender in its own
// process, alternated): 8–17% faster at (64,128,256,10) f64, ~5% at (256,784,1024,10), when each
// product is cut in two for two single-threaded calls and the backward's dW and dX run side by
// side (float32 stays on OpenBLAS's threads, for its bits: blas.h). Debian's serial OpenBLAS
// (libopenblas0-serial, the same 0.3.21 sources and kernels) is not safe to call from two threads
// at once (built without USE_LOCKING, its buffer table has no lock), so each lane is its own copy,
// loaded with dlmopen into a fresh link-map namespace: its own globals and buffers, and its own
// copies of libc, libm and libgfortran's data, over the same mapped files (the code is shared).
//
// A lane is claimed for one call (Lease), so any thread may use any free one: every lane holds the
// same library on the same CPU, so which lane runs a product never changes its bits.
// Unavailable (no serial library, a namespace that will not load, other kernels than the process's
// OpenBLAS picked): products run on the process's OpenBLAS as before, and why() says why.
#pragma once

#include <cblas.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>

// Every build but the sanitizer's (scripts/sanitize/gemm_probe.h sets 0): AddressSanitizer's
// runtime does not follow calls into other link-map namespaces.
#ifndef HG_BLAS_LANES
#define HG_BLAS_LANES 1
#endif

namespace hg::lanes {

struct Lane {
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&cblas_dgemm) dgemm = nullptr;
  bool taken = false;  // under Lanes::mutex_
};

// dlmopen namespaces are a scarce resource (glibc has 16, the first is the process's, and each
// copy's own libc takes static TLS that glibc reserves for a few): the most threads that multiply
// at once is OpenBLAS's count plus the Node threads stepping meanwhile; past what loads, a thread
// waits for a lane to be released.
constexpr int kMaxLanes = 8;

// "OpenBLAS 0.3.21" of openblas_get_config()'s "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH …".
inline std::string openblasVersion(const char* config) {
  const std::string c = config ? config : "";
  const size_t space = c.find(' ');
  return space == std::string::npos ? c : c.substr(0, c.find(' ', space + 1));
}

// The serial library beside the process's OpenBLAS, where Debian keeps each flavour in its own
// folder behind the alternatives symlink (…/openblas-pthread/ or …/openblas-openmp/ beside
// …/openblas-serial/); empty when the process's OpenBLAS is not laid out so (linked statically,
// another distribution's), or the file is not root's and closed to other writers: a library is
// code that runs as it loads.
inline std::string serialLibraryPath() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&cblas_dgemm), &info) || !info.dli_fname) return {};
  char real[PATH_MAX];
  if (!realpath(info.dli_fname, real)) return {};
  const std::string p(real);
  const size_t file = p.rfind('/');
  if (file == std::string::npos || file == 0) return {};
  const size_t dir = p.rfind('/', file - 1);
  if (dir == std::string::npos) return {};
  const std::string flavour = p.substr(dir + 1, file - dir - 1);
  if (flavour != "openblas-pthread" && flavour != "openblas-openmp") return {};
  const std::string serial = p.substr(0, dir) + "/openblas-serial/libopenblas.so.0";
  struct stat st {};
  if (stat(serial.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
    return {};
  return serial;
}

class Lanes {
 public:
  // Never destroyed: a helper thread may hold a lane at exit.
  static Lanes& get() {
    static Lanes* l = new Lanes();
    return *l;
  }

  // Empty when lanes run here (lane 0 loaded), else why not.
  const std::string& why() {
    std::call_once(probed_, [this] {
      if (!HG_BLAS_LANES) {
        why_ = "this build has no lanes (the sanitizer's)";
        return;
      }
      path_ = serialLibraryPath();
      if (path_.empty()) {
        why_ = "no serial OpenBLAS beside the process's (Debian's libopenblas0-serial, root's, in an openblas-serial folder "
               "beside openblas-pthread or openblas-openmp)";
        return;
      }
      std::lock_guard<std::mutex> g(mutex_);
      why_ = load(path_, &lanes_[0]);
      if (why_.empty()) count_ = 1;
    });
    return why_;
  }
  bool available() { return why().empty(); }

  // A free lane, taken for the caller until release(); a new one is loaded when every loaded lane
  // is taken (up to kMaxLanes, while loads succeed), else the caller waits for a release.
  // One lock for every claim and release: a product costs two uncontended lock/unlock pairs.
  Lane* claim() {
    std::unique_lock<std::mutex> g(mutex_);
    for (;;) {
      for (int i = 0; i < count_; ++i)
        if (!lanes_[i].taken) {
          lanes_[i].taken = true;
          return &lanes_[i];
        }
      if (count_ < kMaxLanes && !failed_) {
        // Loading under the lock holds other claims for the few milliseconds of a dlmopen, once per lane.
        Lane* l = &lanes_[count_];
        if (load(path_, l).empty()) {
          l->taken = true;
          ++count_;
          return l;
        }
        failed_ = true;
      }
      freed_.wait(g);
    }
  }

  void release(Lane* l) {
    {
      std::lock_guard<std::mutex> g(mutex_);
      l->taken = false;
    }
    freed_.notify_one();
  }

 private:
  Lanes() = default;

  // Loads the library into a new namespace; empty on success, else why not (the namespace closed).
  static std::string load(const std::string& path, Lane* into) {
    void* h = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      return std::string("the serial OpenBLAS (libopenblas0-serial) did not load: ") + (e ? e : path);
    }
    const auto parallel = reinterpret_cast<int (*)()>(dlsym(h, "openblas_get_parallel"));
    const auto corename = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename"));
    const auto config = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_config"));
    into->sgemm = reinterpret_cast<decltype(&cblas_sgemm)>(dlsym(h, "cblas_sgemm"));
    into->dgemm = reinterpret_cast<decltype(&cblas_dgemm)>(dlsym(h, "cblas_dgemm"));
    std::string why;
    if (!parallel || !corename || !config || !into->sgemm || !into->dgemm) why = path + " lacks OpenBLAS's symbols";
    else if (parallel() != 0) why = path + " is a threaded OpenBLAS, not the serial one";
    // The same release and the same kernels as the process's OpenBLAS (both read OPENBLAS_CORETYPE
    // as they load), so a product's bits do not depend on which library ran it.
    else if (openblasVersion(config()) != openblasVersion(openblas_get_config()))
      why = "the serial OpenBLAS is " + openblasVersion(config()) + ", the process's " + openblasVersion(openblas_get_config());
    else if (std::strcmp(corename(), openblas_get_corename()) != 0)
      why = std::string("the serial OpenBLAS picked the ") + corename() + " kernels, the process's OpenBLAS " +
            openblas_get_corename();
    if (!why.empty()) dlclose(h);
    return why;
  }

  std::mutex mutex_;  // count_, failed_, every lane's `taken`, and loading
  std::condition_variable freed_;
  Lane lanes_[kMaxLanes];
  int count_ = 0;
  bool failed_ = false;
  std::once_flag probed_;
  std::string why_;
  std::string path_;
};

// Whether products run on lanes (setBlasLanes): on by default where they load.
inline std::atomic<bool>& lanesSwitch() {
  static std::atomic<bool> on{true};
  return on;
}
inline bool lanesOn() { return lanesSwitch().load(std::memory_order_relaxed) && Lanes::get().available(); }

// One lane for one call.
class Lease {
 public:
  Lease() : lane_(Lanes::get().claim()) {}
  ~Lease() { Lanes::get().release(lane_); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  const Lane& operator*() const { return *lane_; }

 private:
  Lane* lane_;
};

}  // namespace hg::lanes
