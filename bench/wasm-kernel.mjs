// `node bench/wasm-kernel.mjs [rounds]`: the wasm GEMM's micro-kernel alone (native/wasm/gemm.h's
// microKernel, 4×8 float32 and 4×4 float64, kc = 256) over panels that stay in cache, against the same
// loop of 128-bit multiplies and adds written with SSE intrinsics and compiled natively by clang
// (-ffp-contract=off: no fused multiply-add, as in wasm). Both are built here into a temporary
// folder (clang with the wasm32 target and wasm-ld, as scripts/build-wasm.mjs; a native clang),
// then timed alternately; each prints its best GFLOP/s over the rounds. What it tells: whether
// V8's code for the kernel is what is short, or the instruction set (SIMD128 has no FMA).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const rounds = Number(process.argv[2] ?? 5);
if (!(Number.isInteger(rounds) && rounds >= 1)) {
  console.error('usage: node bench/wasm-kernel.mjs [rounds ≥ 1]');
  process.exit(2);
}
const clang = process.env.CLANG ?? 'clang';
const wasmLd = process.env.WASM_LD ?? 'wasm-ld';
// One panel of A (4 or 8 KiB) against 8 panels of B in turn (64 KiB in either dtype, read from L2
// at 32 bytes a k step, well within its bandwidth), C's tiles accumulated: no packing, nothing from DRAM.
const KC = 256, PANELS = 8;

const wasmSource = `#include "gemm.h"
alignas(16) static float Af[4 * ${KC}], Bf[${PANELS} * 8 * ${KC}], Cf[4 * 8 * ${PANELS}];
alignas(16) static double Ad[4 * ${KC}], Bd[${PANELS} * 4 * ${KC}], Cd[4 * 4 * ${PANELS}];
extern "C" __attribute__((export_name("runF"))) void runF(int reps) {
  for (int r = 0; r < reps; ++r)
    for (int j = 0; j < ${PANELS}; ++j) hg::wasm::microKernel<float>(${KC}, Af, Bf + j * 8 * ${KC}, Cf + j * 8, 8 * ${PANELS}, 4, 8, false, 1.0f);
}
extern "C" __attribute__((export_name("runD"))) void runD(int reps) {
  for (int r = 0; r < reps; ++r)
    for (int j = 0; j < ${PANELS}; ++j) hg::wasm::microKernel<double>(${KC}, Ad, Bd + j * 4 * ${KC}, Cd + j * 4, 4 * ${PANELS}, 4, 4, false, 1.0);
}
`;

// The same k loop: two vectors of B, one splat of A per row, a multiply then an add into each sum;
// one template for both dtypes over the SSE operations by overload.
const nativeSource = `#include <immintrin.h>
#include <cstdio>
#include <cstdlib>
#include <ctime>
static float Af[4 * ${KC}] __attribute__((aligned(16))), Bf[${PANELS} * 8 * ${KC}] __attribute__((aligned(16))), Cf[4 * 8 * ${PANELS}];
static double Ad[4 * ${KC}] __attribute__((aligned(16))), Bd[${PANELS} * 4 * ${KC}] __attribute__((aligned(16))), Cd[4 * 4 * ${PANELS}];
static inline __m128 load(const float* p) { return _mm_loadu_ps(p); }
static inline __m128d load(const double* p) { return _mm_loadu_pd(p); }
static inline __m128 splat(const float* p) { return _mm_set1_ps(*p); }
static inline __m128d splat(const double* p) { return _mm_set1_pd(*p); }
static inline __m128 madd(__m128 s, __m128 x, __m128 y) { return _mm_add_ps(s, _mm_mul_ps(x, y)); }
static inline __m128d madd(__m128d s, __m128d x, __m128d y) { return _mm_add_pd(s, _mm_mul_pd(x, y)); }
static inline void add(float* p, __m128 v) { _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), v)); }
static inline void add(double* p, __m128d v) { _mm_storeu_pd(p, _mm_add_pd(_mm_loadu_pd(p), v)); }
template <typename T, typename V>
__attribute__((noinline)) void kernel(const T* a, const T* b, T* c, int ldc) {
  constexpr int L = 16 / sizeof(T);
  V s[4][2] = {};
  for (int k = 0; k < ${KC}; ++k, a += 4, b += 2 * L) {
    const V b0 = load(b), b1 = load(b + L);
    for (int r = 0; r < 4; ++r) {
      const V x = splat(a + r);
      s[r][0] = madd(s[r][0], x, b0);
      s[r][1] = madd(s[r][1], x, b1);
    }
  }
  for (int r = 0; r < 4; ++r) for (int v = 0; v < 2; ++v) add(c + r * ldc + L * v, s[r][v]);
}
static void kf(const float* a, const float* b, float* c, int ldc) { kernel<float, __m128>(a, b, c, ldc); }
static void kd(const double* a, const double* b, double* c, int ldc) { kernel<double, __m128d>(a, b, c, ldc); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char** argv) {
  const long reps = atol(argv[1]);
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const double t0 = now();
    for (long r = 0; r < reps; ++r) for (int j = 0; j < ${PANELS}; ++j) argv[2][0] == 'f' ? kf(Af, Bf + j * 8 * ${KC}, Cf + j * 8, 8 * ${PANELS}) : kd(Ad, Bd + j * 4 * ${KC}, Cd + j * 4, 4 * ${PANELS});
    const double t = now() - t0;
    if (t < best) best = t;
  }
  printf("%.17g\\n", best);
  return 0;
}
`;

const dir = mkdtempSync(join(tmpdir(), 'hg-wasm-kernel-'));
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stderr || r.error}`);
  return r.stdout;
};
try {
  writeFileSync(join(dir, 'kernel.cc'), wasmSource);
  writeFileSync(join(dir, 'native.cc'), nativeSource);
  run(clang, ['--target=wasm32', '-O3', '-msimd128', '-mbulk-memory', '-std=c++17', '-fno-exceptions', '-fno-rtti', '-nostdlib',
    '-isystem', join(root, 'native', 'wasm', 'include'), '-I', join(root, 'native', 'wasm'), '-c', join(dir, 'kernel.cc'), '-o', join(dir, 'kernel.o')]);
  run(wasmLd, [join(dir, 'kernel.o'), '-o', join(dir, 'kernel.wasm'), '--no-entry']);
  run(clang, ['-x', 'c++', '-std=c++17', '-O3', '-mavx', '-ffp-contract=off', join(dir, 'native.cc'), '-o', join(dir, 'native'), '-lstdc++']);
  const w = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(join(dir, 'kernel.wasm'))), {}).exports;
  const flopPerRep = { f32: 2 * 4 * 8 * KC * PANELS, f64: 2 * 4 * 4 * KC * PANELS };
  const best = { wasm: { f32: 0, f64: 0 }, native: { f32: 0, f64: 0 } };
  for (let round = 0; round < rounds; round++) {
    for (const dtype of ['f32', 'f64']) {
      const reps = Math.round(2e8 / flopPerRep[dtype]);
      const fn = dtype === 'f32' ? w.runF : w.runD;
      fn(reps); // past V8's baseline tier
      let t = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        fn(reps);
        t = Math.min(t, (performance.now() - t0) / 1e3);
      }
      best.wasm[dtype] = Math.max(best.wasm[dtype], (flopPerRep[dtype] * reps) / t / 1e9);
      const tn = Number(run(join(dir, 'native'), [String(reps), dtype === 'f32' ? 'f' : 'd']));
      best.native[dtype] = Math.max(best.native[dtype], (flopPerRep[dtype] * reps) / tn / 1e9);
    }
  }
  for (const dtype of ['f32', 'f64']) {
    const tile = dtype === 'f32' ? '4×8' : '4×4';
    console.log(`${dtype} ${tile} micro-kernel, kc ${KC}, panels in cache: wasm ${best.wasm[dtype].toFixed(1)} GFLOP/s, ` +
      `native SSE multiply + add ${best.native[dtype].toFixed(1)} GFLOP/s (best of ${rounds} alternated rounds)`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
