// hg::gemm for WebAssembly: what native/core/blas.h offers for both dtypes (row-major, BLAS
// semantics), on a blocked SIMD128 GEMM instead of OpenBLAS. native/core/stack.h includes this in
// place of blas.h when built with -DHG_GEMM_HEADER='"gemm.h"' (scripts/build-wasm.mjs).
//
// The GotoBLAS/BLIS structure: op(B) is packed KC×NC at a time into NR-wide column panels,
// op(A) MC×KC into MR-tall row panels, both zero-padded to whole panels, so one micro-kernel
// serves every transpose case (the transposition happens while packing) and every edge (a partial
// tile is computed whole and only its valid part is written back). The micro-kernel keeps an
// MR×NR tile of C in registers: x86-64 gives V8 16 vector registers, one of them scratch, so
// MR·NR/lanes accumulators + NR/lanes loads of B + one broadcast of A must fit in 15. Measured in
// Node 20 on x86-64: 4×4 (f64) and 4×8 (f32) beat 6×4/6×8, 4×6/8×4 and 2×8/4×12, which spill.
#pragma once

#include <stddef.h>
#include <wasm_simd128.h>

#include "../core/product.h"
#ifdef HG_WASM_THREADS
#include "threads.h"
#endif

namespace hg {
namespace wasm {

template <typename T>
struct Simd;

template <>
struct Simd<double> {
  static constexpr int kLanes = 2;
  static constexpr int kMR = 4, kNR = 4;                 // 8 accumulators
  static constexpr int kMC = 128, kKC = 256, kNC = 1024;  // A block 256 KiB (L2), B panel 8 KiB (L1)
  static v128_t splat(const double* p) { return wasm_v128_load64_splat(p); }
  static v128_t madd(v128_t acc, v128_t a, v128_t b) { return wasm_f64x2_add(acc, wasm_f64x2_mul(a, b)); }
  static v128_t scale(v128_t v, double s) { return wasm_f64x2_mul(v, wasm_f64x2_splat(s)); }
  static v128_t add(v128_t a, v128_t b) { return wasm_f64x2_add(a, b); }
};

template <>
struct Simd<float> {
  static constexpr int kLanes = 4;
  static constexpr int kMR = 4, kNR = 8;                  // 8 accumulators
  static constexpr int kMC = 128, kKC = 256, kNC = 2048;  // A block 128 KiB (L2), B panel 8 KiB (L1)
  static v128_t splat(const float* p) { return wasm_v128_load32_splat(p); }
  static v128_t madd(v128_t acc, v128_t a, v128_t b) { return wasm_f32x4_add(acc, wasm_f32x4_mul(a, b)); }
  static v128_t scale(v128_t v, float s) { return wasm_f32x4_mul(v, wasm_f32x4_splat(s)); }
  static v128_t add(v128_t a, v128_t b) { return wasm_f32x4_add(a, b); }
};

// dst[j·ldd + i] = src[i·lds + j] for an L×L block, L the lanes: a transposing pack's inner step
// with L loads and L stores of whole vectors instead of L² scalar moves (a copy: the bits are M's).
inline void transposeBlock(const float* src, int lds, float* dst, int ldd) {
  const v128_t r0 = wasm_v128_load(src), r1 = wasm_v128_load(src + lds), r2 = wasm_v128_load(src + 2 * size_t(lds)),
               r3 = wasm_v128_load(src + 3 * size_t(lds));
  const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
  const v128_t t2 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
  wasm_v128_store(dst, wasm_i64x2_shuffle(t0, t2, 0, 2));
  wasm_v128_store(dst + ldd, wasm_i64x2_shuffle(t0, t2, 1, 3));
  wasm_v128_store(dst + 2 * size_t(ldd), wasm_i64x2_shuffle(t1, t3, 0, 2));
  wasm_v128_store(dst + 3 * size_t(ldd), wasm_i64x2_shuffle(t1, t3, 1, 3));
}
inline void transposeBlock(const double* src, int lds, double* dst, int ldd) {
  const v128_t r0 = wasm_v128_load(src), r1 = wasm_v128_load(src + lds);
  wasm_v128_store(dst, wasm_i64x2_shuffle(r0, r1, 0, 2));
  wasm_v128_store(dst + ldd, wasm_i64x2_shuffle(r0, r1, 1, 3));
}

// A kc×nc block of a matrix M into R-column panels: panel j holds, for each k, R consecutive entries
// of row k; columns past nc are zeros. M's element (k0+k, j0+j) is M[k·ld + j] (rows), or M[j·ld + k]
// when trans. op(B) is packed as it is (R = NR), op(A) as its transpose (R = MR): an MR-row panel of
// op(A) is an MR-column panel of op(A)ᵀ.
template <int R, typename T>
void pack(bool trans, const T* M, int ld, int k0, int j0, int kc, int nc, T* out) {
  for (int jr = 0; jr < nc; jr += R, out += R * kc) {
    const int nr = nc - jr < R ? nc - jr : R;
    if (!trans) {  // a row of the panel is contiguous in M
      for (int k = 0; k < kc; ++k) {
        const T* src = M + size_t(k0 + k) * ld + (j0 + jr);
        T* dst = out + k * R;
        if (nr == R) {
          for (int c = 0; c < R; ++c) dst[c] = src[c];
        } else {
          for (int c = 0; c < nr; ++c) dst[c] = src[c];
          for (int c = nr; c < R; ++c) dst[c] = T(0);
        }
      }
    } else if (nr == R) {  // whole panel: L×L blocks of M transposed in registers (L = lanes)
      constexpr int L = int(16 / sizeof(T));
      static_assert(R % L == 0, "a panel holds whole L×L blocks");
      int k = 0;
      for (; k + L <= kc; k += L)
        for (int c = 0; c < R; c += L) transposeBlock(M + size_t(j0 + jr + c) * ld + (k0 + k), ld, out + size_t(k) * R + c, R);
      for (; k < kc; ++k)
        for (int c = 0; c < R; ++c) out[k * R + c] = M[size_t(j0 + jr + c) * ld + (k0 + k)];
    } else {  // walk each of the R rows of M along k
      for (int c = 0; c < R; ++c) {
        if (c < nr) {
          const T* src = M + size_t(j0 + jr + c) * ld + k0;
          for (int k = 0; k < kc; ++k) out[k * R + c] = src[k];
        } else {
          for (int k = 0; k < kc; ++k) out[k * R + c] = T(0);
        }
      }
    }
  }
}

// C[0:mr, 0:nr] (=|+=) alpha · Ã·B̃ over kc packed steps. overwrite: the first K block of a
// beta = 0 product, where C's old contents (possibly garbage or NaN) must not be read.
template <typename T>
void microKernel(int kc, const T* a, const T* b, T* C, int ldc, int mr, int nr, bool overwrite, T alpha) {
  using S = Simd<T>;
  constexpr int MR = S::kMR, NR = S::kNR, L = S::kLanes, V = NR / L;
  v128_t acc[MR][V];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = wasm_i64x2_const(0, 0);  // all-zero bits: +0 in either dtype
  for (int k = 0; k < kc; ++k, a += MR, b += NR) {
    // An empty asm that "changes" a and b: LLVM's loop strength reduction can no longer see them as
    // a + k·MR and b + k·NR, so it leaves the loads as a[r] and b[v·L] off this step's pointers, which
    // fold into the loads' offset immediates. Left to itself it computes each address with a plain
    // i32.add that V8 must keep (a wasm add wraps; an offset does not), one more instruction per load:
    // this is 3–9% of a GEMM (bench/wasm-ab.mjs). The arithmetic, and so the bits, are unchanged.
    __asm__("" : "+r"(a), "+r"(b));
    v128_t bv[V];
    for (int v = 0; v < V; ++v) bv[v] = wasm_v128_load(b + v * L);
    for (int r = 0; r < MR; ++r) {
      const v128_t av = S::splat(a + r);
      for (int v = 0; v < V; ++v) acc[r][v] = S::madd(acc[r][v], av, bv[v]);
    }
  }
  if (alpha != T(1))
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < V; ++v) acc[r][v] = S::scale(acc[r][v], alpha);
  if (mr == MR && nr == NR) {
    for (int r = 0; r < MR; ++r) {
      T* c = C + size_t(r) * ldc;
      for (int v = 0; v < V; ++v) {
        const v128_t sum = overwrite ? acc[r][v] : S::add(wasm_v128_load(c + v * L), acc[r][v]);
        wasm_v128_store(c + v * L, sum);
      }
    }
    return;
  }
  alignas(16) T tile[MR * NR];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < V; ++v) wasm_v128_store(tile + r * NR + v * L, acc[r][v]);
  for (int r = 0; r < mr; ++r) {
    T* c = C + size_t(r) * ldc;
    for (int j = 0; j < nr; ++j) c[j] = overwrite ? tile[r * NR + j] : c[j] + tile[r * NR + j];
  }
}

#ifdef HG_WASM_THREADS
constexpr int kThreads = kMaxThreads;  // threads.h
#else
constexpr int kThreads = 1;
#endif

// C[M,N] = alpha · op(A) · op(B) + beta · C on the calling thread, with thread's packing buffers.
// beta = 0 never reads C (BLAS semantics). Each output is summed as acc = 0, acc += a·b for k
// along each KC block in order, then C (=|+=) alpha·acc per block: where C's block starts (its
// rows, its columns) changes nothing in that order, which lets gemm() below cut C into blocks for the pool (threads.h).
template <typename T>
void gemmSerial(bool transA, bool transB, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
                T* C, int ldc, int thread) {
  using S = Simd<T>;
  // C = beta·C first, except beta = 0 when K > 0: the first K block then overwrites C unread. With
  // K = 0 no micro-kernel runs, so beta = 0 writes its zeros here (never 0·C: C may hold NaN).
  if (beta != T(1) && (beta != T(0) || K == 0))
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[size_t(i) * ldc + j] = beta == T(0) ? T(0) : C[size_t(i) * ldc + j] * beta;
  // The packing buffers live in the module's static memory, one pair per thread: a thread runs one
  // GEMM (or one block of one) at a time.
  alignas(16) static T packedA[kThreads][S::kMC * S::kKC];
  alignas(16) static T packedB[kThreads][S::kKC * S::kNC];
  T* pa = packedA[thread];
  T* pb = packedB[thread];
  for (int jc = 0; jc < N; jc += S::kNC) {
    const int nc = N - jc < S::kNC ? N - jc : S::kNC;
    for (int pc = 0; pc < K; pc += S::kKC) {
      const int kc = K - pc < S::kKC ? K - pc : S::kKC;
      const bool overwrite = pc == 0 && beta == T(0);
      pack<S::kNR>(transB, B, ldb, pc, jc, kc, nc, pb);
      for (int ic = 0; ic < M; ic += S::kMC) {
        const int mc = M - ic < S::kMC ? M - ic : S::kMC;
        pack<S::kMR>(!transA, A, lda, pc, ic, kc, mc, pa);
        for (int jr = 0; jr < nc; jr += S::kNR) {
          const int nr = nc - jr < S::kNR ? nc - jr : S::kNR;
          const T* bp = pb + size_t(jr) * kc;
          for (int ir = 0; ir < mc; ir += S::kMR) {
            const int mr = mc - ir < S::kMR ? mc - ir : S::kMR;
            microKernel(kc, pa + size_t(ir) * kc, bp, C + size_t(ic + ir) * ldc + (jc + jr), ldc, mr,
                        nr, overwrite, alpha);
          }
        }
      }
    }
  }
}

// C[M,N] = alpha · op(A) · op(B) + beta · C (row-major BLAS semantics), on the pool's threads when
// the threaded build has workers and the product is worth waking them (threads.h), else here.
template <typename T>
void gemm(bool transA, bool transB, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc) {
#ifdef HG_WASM_THREADS
  using S = Simd<T>;
  const int threads = pool().threads;
  // Under 2^22 multiply-adds (0.1–0.2 ms on one thread) a sleeping worker's wake-up (tens of µs
  // on an idle machine, far more on a busy one) would cost about what it saves.
  if (threads > 1 && M > 0 && N > 0 && double(M) * N * K >= double(1 << 22)) {
    // Two blocks a thread: a thread slowed by the machine's other work leaves its second to the others.
    const int want = 2 * threads;
    int rowsPer = M, colsPer = N, colBlocks = 1;  // block b: rows (b / colBlocks)·rowsPer…, columns (b % colBlocks)·colsPer…
    if (N >= M) {  // cut the columns, in whole NR panels and whole 64-byte lines (no line of C written by two threads)
      constexpr int step = S::kNR * int(sizeof(T)) >= 64 ? S::kNR : 64 / int(sizeof(T));
      static_assert(step % S::kNR == 0, "a block holds whole panels");
      const int steps = (N + step - 1) / step;
      colsPer = ((steps + want - 1) / want) * step;
      colBlocks = (N + colsPer - 1) / colsPer;
    } else {  // cut the rows, in whole MR panels
      const int panels = (M + S::kMR - 1) / S::kMR;
      rowsPer = ((panels + want - 1) / want) * S::kMR;
    }
    const int blocks = ((M + rowsPer - 1) / rowsPer) * colBlocks;
    if (blocks > 1) {
      parallelBlocks(blocks, [&](uint32_t b, int thread) {
        const int r0 = int(b / uint32_t(colBlocks)) * rowsPer, c0 = int(b % uint32_t(colBlocks)) * colsPer;
        const int m = M - r0 < rowsPer ? M - r0 : rowsPer, n = N - c0 < colsPer ? N - c0 : colsPer;
        // op(A)'s rows r0… and op(B)'s columns c0…: an offset into the stored matrix either way round.
        const size_t aAt = transA ? size_t(r0) : size_t(r0) * lda, bAt = transB ? size_t(c0) * ldb : size_t(c0);
        gemmSerial(transA, transB, m, n, K, alpha, A + aAt, lda, B + bAt, ldb, beta, C + size_t(r0) * ldc + c0, ldc, thread);
      });
      return;
    }
  }
#endif
  gemmSerial(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 0);
}

// The most blocks forColumnBlocks cuts a pass into (two a thread).
constexpr int kColumnBlocks = 2 * kThreads;

// fn(c0, c1, block) over bands of columns [c0, c1) of a rows × cols pass, side by side on the pool
// when the threaded build has workers and the pass is worth waking them (2^16 entries, about
// 0.1 ms), else fn(0, cols, 0) here; returns the number of bands. Bands are whole 64-byte lines of
// either dtype, so no line is written by two threads. The bits are the caller's to keep: each band
// must compute its columns as the whole pass would.
template <typename F>
int forColumnBlocks(size_t rows, size_t cols, const F& fn) {
#ifdef HG_WASM_THREADS
  const int threads = pool().threads;
  if (threads > 1 && double(rows) * double(cols) >= double(1 << 16)) {
    constexpr size_t step = 16;  // 64 bytes of float, two lines of double
    const size_t want = size_t(kColumnBlocks < 2 * threads ? kColumnBlocks : 2 * threads);
    const size_t per = ((cols + step - 1) / step + want - 1) / want * step;
    const int blocks = int((cols + per - 1) / per);
    if (blocks > 1) {
      parallelBlocks(blocks, [&](uint32_t b, int) {
        const size_t c0 = size_t(b) * per, c1 = cols - c0 < per ? cols : c0 + per;
        fn(c0, c1, int(b));
      });
      return blocks;
    }
  }
#endif
  (void)rows;
  fn(size_t(0), cols, 0);
  return 1;
}

}  // namespace wasm

using wasm::forColumnBlocks;
using wasm::gemm;  // for both dtypes, as blas.h's two overloads
using wasm::kColumnBlocks;

template <typename T>
void gemm(const Product<T>& p) {
  gemm(p.transA, p.transB, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, p.C, p.ldc);
}

// A layer's dW and dX, in turn, after(product, which, 0) on each (native builds run them side by
// side on BLAS lanes, after() on each block: blas.h).
template <typename T, typename After>
void gemmPair(const Product<T>& p, const Product<T>& q, const After& after) {
  gemm(p);
  after(p, 0, 0);
  gemm(q);
  after(q, 1, 0);
}

}  // namespace hg
