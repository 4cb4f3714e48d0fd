// BLAS lanes: private single-threaded copies of OpenBLAS, one per thread that multiplies at a time,
// so that handgrad splits its products between its own threads (blas.h) instead of handing each one
// to OpenBLAS's thread pool.
//
// Why: OpenBLAS's thread count is one process-wide setting that LibTorch shares (and the exact
// mode needs at PyTorch's default), and its threaded GEMM synchronises its threads inside every
// product. Measured on the 2-core VM (C prototype, the two-layer step, each contender in its own
// process, alternated): 8–17% faster at (64,128,256,10) f64, 8–10% in f32, ~5% at (256,784,1024,10),
// when each product is cut in two for two single-threaded calls and the backward's dW and dX run
// side by side. Debian's serial OpenBLAS (libopenblas0-serial, the same 0.3.21 sources and kernels)
// is not safe to call from two threads at once (built without USE_LOCKING, its buffer table has no
// lock), so each lane is its own copy, loaded with dlmopen into a fresh link-map namespace: its
// own globals and buffers, the same file (no extra memory for the code).
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

#include <atomic>
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
  std::mutex busy;
};

// dlmopen namespaces are a scarce resource (glibc has 16, the first is the process's): the most
// threads that multiply at once is OpenBLAS's count plus the Node threads stepping meanwhile.
constexpr int kMaxLanes = 8;

// The serial library beside the process's OpenBLAS: Debian keeps each flavour in its own folder
// (…/openblas-pthread/, …/openblas-serial/) behind the alternatives symlink.
inline std::string serialLibraryPath() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&cblas_dgemm), &info) || !info.dli_fname) return {};
  char real[PATH_MAX];
  if (!realpath(info.dli_fname, real)) return {};
  std::string p(real);
  const size_t file = p.rfind('/');
  if (file == std::string::npos || file == 0) return {};
  const size_t dir = p.rfind('/', file - 1);
  if (dir == std::string::npos) return {};
  return p.substr(0, dir) + "/openblas-serial/libopenblas.so.0";
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
      const std::string path = serialLibraryPath();
      if (path.empty()) {
        why_ = "the process's OpenBLAS could not be located (dladdr)";
        return;
      }
      why_ = load(path, &lanes_[0]);
      if (why_.empty()) {
        path_ = path;
        count_.store(1, std::memory_order_release);
      }
    });
    return why_;
  }
  bool available() { return why().empty(); }

  // A free lane, locked for the caller; a new one is loaded when every loaded lane is taken, and
  // past kMaxLanes (or a namespace that no longer loads) the caller waits for lane 0.
  Lane* claim() {
    for (;;) {
      const int n = count_.load(std::memory_order_acquire);
      for (int i = 0; i < n; ++i)
        if (lanes_[i].busy.try_lock()) return &lanes_[i];
      {
        std::lock_guard<std::mutex> g(loading_);
        const int now = count_.load(std::memory_order_acquire);
        if (now != n) continue;  // another thread added one: try it
        if (now < kMaxLanes && !failed_) {
          Lane* l = &lanes_[now];
          if (load(path_, l).empty()) {
            l->busy.lock();
            count_.store(now + 1, std::memory_order_release);
            return l;
          }
          failed_ = true;
        }
      }
      lanes_[0].busy.lock();
      return &lanes_[0];
    }
  }

 private:
  Lanes() = default;

  // Loads the library into a new namespace; empty on success, else why not.
  static std::string load(const std::string& path, Lane* into) {
    void* h = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      return std::string("the serial OpenBLAS (libopenblas0-serial) did not load: ") + (e ? e : path);
    }
    const auto parallel = reinterpret_cast<int (*)()>(dlsym(h, "openblas_get_parallel"));
    const auto corename = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename"));
    into->sgemm = reinterpret_cast<decltype(&cblas_sgemm)>(dlsym(h, "cblas_sgemm"));
    into->dgemm = reinterpret_cast<decltype(&cblas_dgemm)>(dlsym(h, "cblas_dgemm"));
    if (!parallel || !corename || !into->sgemm || !into->dgemm) return path + " lacks OpenBLAS's symbols";
    if (parallel() != 0) return path + " is a threaded OpenBLAS, not the serial one";
    // The same kernels as the process's OpenBLAS (both read OPENBLAS_CORETYPE as they load), so a
    // product's bits do not depend on which library ran it.
    if (std::strcmp(corename(), openblas_get_corename()) != 0)
      return std::string("the serial OpenBLAS picked the ") + corename() + " kernels, the process's OpenBLAS " +
             openblas_get_corename();
    return {};
  }

  Lane lanes_[kMaxLanes];
  std::atomic<int> count_{0};
  std::once_flag probed_;
  std::string why_;
  std::string path_;
  std::mutex loading_;
  bool failed_ = false;
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
  ~Lease() { lane_->busy.unlock(); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  const Lane& operator*() const { return *lane_; }

 private:
  Lane* lane_;
};

}  // namespace hg::lanes
