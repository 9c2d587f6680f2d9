// The bf16 matmul rate of cuda::LtGemm (kernels/cuda/gemm_lt.hpp: cuBLASLt, bf16 in, fp32
// accumulate and out) at the ~1B Llama's training shapes at T = 2048 tokens (hidden 2048,
// intermediate 5632, vocabulary 32000), in the three forms a linear layer takes in training, and
// at 8192^3, against cublasSgemm in fp32 (CUBLAS_PEDANTIC_MATH: no TF32, no reduced precision) and
// cublasSgemm with TF32 tensor cores (CUBLAS_TF32_TENSOR_OP_MATH), all in the same run:
//
//   bench_gemm_cuda [--reps N]     timings (N >= 20, default 30), then each LtGemm result checked
//                                  against the fp32 SGEMM's on the same inputs
//   bench_gemm_cuda --small        correctness only: small shapes (K, N multiples of 8, not 16;
//                                  M = 1, odd M), every LtGemm operation against a float64 CPU
//                                  reference; for compute-sanitizer (scripts/gpu_check.sh)
//
// A layer x [M, K] -> y [M, N] (W [N, K]) has three GEMMs of 2 M N K flops each: forward
// y = x W^T, backward input dx = dy W, backward weight dW += dy^T x. One line per shape and form:
// each engine's median time and TFLOP/s, the bf16 rate's ratio to the 8192^3 forward bf16 rate (the
// chip's practical bf16 peak, which the training benchmark's MFU divides by), and the relative
// difference from the fp32 SGEMM result (||lt - sgemm|| / ||sgemm||; both differ from the exact
// sum of the bf16 inputs' products by fp32 accumulation only, bound 2e-5 max(1, P / 2048) for a
// sum of P terms: test_gemm_lt_cuda.cpp explains the bound).
//
// Timing: device events around each call on one stream, a 50 us spin kernel queued ahead of the
// start event so the host's enqueueing is not timed, 3 warm-up calls (plans, cuBLAS's own
// workspace), the median of the repetitions. Inputs are random (about N(0, 1), bf16-exact, the
// same values in the fp32 copies: never zeros, which run faster), rotated among enough sets that
// the sets together hold at least twice the L2 cache (>= 2 sets), so no call finds its inputs there.
// Without a GPU it says so and exits 0 (scripts/gpu_check.sh runs every bench_* without arguments);
// it exits 1 when a check fails.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <vector>

#include "bench_timing.hpp"
#include "cuda/cublas_check.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/gemm_lt.hpp"
#include "cuda/stream.hpp"

namespace {

using namespace fusellm;
using bf16 = __nv_bfloat16;
using cuda::dev_alloc;
using cuda::DevPtr;

constexpr int kWarmup = 3;
constexpr int64_t kSpinNs = 50000;

enum class Form { forward, backward_input, backward_weight };
const Form kForms[] = {Form::forward, Form::backward_input, Form::backward_weight};
const char* form_name(Form f) {
  return f == Form::forward ? "forward" : f == Form::backward_input ? "backward input" : "backward weight";
}

struct Shape {
  const char* name;
  int64_t M, N, K;  // x [M, K], W [N, K], y and dy [M, N]
};
// The sum's length in each form: K (forward), N (backward input), M (backward weight).
int64_t sum_length(const Shape& s, Form f) { return f == Form::forward ? s.K : f == Form::backward_input ? s.N : s.M; }
double fp32_bound(int64_t P) { return 1e-5 * std::max(1.0, double(P) / 2048.0); }

// PCG's output hash (O'Neill), twice per element: four 16-bit uniforms summed, centred, unit variance.
__device__ __forceinline__ uint32_t pcg_hash(uint32_t v) {
  const uint32_t s = v * 747796405u + 2891336453u;
  const uint32_t w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
// Writes the same bf16-rounded random values to h (bf16) and f (fp32), either may be null.
__global__ void fill_random(bf16* h, float* f, size_t n, uint32_t seed) {
  const uint32_t key = pcg_hash(seed);
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t a = pcg_hash(uint32_t(i) ^ key), b = pcg_hash(a ^ uint32_t(i >> 32) ^ 0x9e3779b9u);
    const float u = float(a & 0xffff) + float(a >> 16) + float(b & 0xffff) + float(b >> 16);
    const bf16 v = __float2bfloat16_rn((u / 65536.f - 2.f) * 1.7320508f);
    if (h) h[i] = v;
    if (f) f[i] = __bfloat162float(v);
  }
}
void fill(bf16* h, float* f, size_t n, uint32_t seed, cudaStream_t s) {
  fill_random<<<1024, 256, 0, s>>>(h, f, n, seed);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

// sums[0] += sum (a - b)^2, sums[1] += sum b^2 over n elements.
__global__ void diff_norms(const float* a, const float* b, size_t n, double* sums) {
  double d2 = 0.0, r2 = 0.0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const double d = double(a[i]) - double(b[i]);
    d2 += d * d, r2 += double(b[i]) * double(b[i]);
  }
  for (int o = 16; o > 0; o /= 2) {
    d2 += __shfl_down_sync(0xffffffffu, d2, o);
    r2 += __shfl_down_sync(0xffffffffu, r2, o);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(sums, d2);
    atomicAdd(sums + 1, r2);
  }
}
double rel_diff(const float* a, const float* b, size_t n, cudaStream_t s) {
  auto sums = dev_alloc<double>(2);
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(sums.get(), 0, 2 * sizeof(double), s));
  diff_norms<<<512, 256, 0, s>>>(a, b, n, sums.get());
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s));
  const std::vector<double> h = cuda::to_host(sums.get(), 2);
  return std::sqrt(h[0] / h[1]);
}

// One input set: x, W and dy in bf16 and, with the same values, fp32.
struct Set {
  DevPtr<bf16> x16, w16, dy16;
  DevPtr<float> x32, w32, dy32;
};
struct Buffers {
  Shape s;
  std::vector<Set> sets;
  DevPtr<float> y, dx, dw, scratch, bias;  // scratch: as large as the largest output
  DevPtr<bf16> y16;
};

Buffers make_buffers(const Shape& s, int nsets, cudaStream_t st) {
  const size_t mk = size_t(s.M * s.K), nk = size_t(s.N * s.K), mn = size_t(s.M * s.N);
  Buffers b{s, {}, dev_alloc<float>(mn), dev_alloc<float>(mk), dev_alloc<float>(nk),
            dev_alloc<float>(std::max({mn, mk, nk})), dev_alloc<float>(size_t(s.N)), dev_alloc<bf16>(mn)};
  for (int i = 0; i < nsets; ++i) {
    Set t{dev_alloc<bf16>(mk), dev_alloc<bf16>(nk), dev_alloc<bf16>(mn),
          dev_alloc<float>(mk), dev_alloc<float>(nk), dev_alloc<float>(mn)};
    fill(t.x16.get(), t.x32.get(), mk, 3 * i + 1, st);
    fill(t.w16.get(), t.w32.get(), nk, 3 * i + 2, st);
    fill(t.dy16.get(), t.dy32.get(), mn, 3 * i + 3, st);
    b.sets.push_back(std::move(t));
  }
  fill(nullptr, b.bias.get(), size_t(s.N), 1000, st);
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(st));
  return b;
}

size_t out_elems(const Shape& s, Form f) {
  return size_t(f == Form::forward ? s.M * s.N : f == Form::backward_input ? s.M * s.K : s.N * s.K);
}
float* out_of(Buffers& b, Form f) {
  return f == Form::forward ? b.y.get() : f == Form::backward_input ? b.dx.get() : b.dw.get();
}

// The form through LtGemm (bf16 operands, fp32 output) into out; backward weight accumulates.
void lt_call(cuda::LtGemm& lt, Buffers& b, int set, Form f, float* out, cudaStream_t st) {
  const Set& t = b.sets[size_t(set)];
  const int64_t M = b.s.M, N = b.s.N, K = b.s.K;
  const cuda::LtIn x{t.x16.get(), M, K, K}, w{t.w16.get(), N, K, K}, dy{t.dy16.get(), M, N, N};
  if (f == Form::forward) lt.forward(x, w, nullptr, cuda::LtMat<float>{out, M, N, N}, false, st);
  else if (f == Form::backward_input) lt.backward_input(dy, w, cuda::LtMat<float>{out, M, K, K}, false, st);
  else lt.backward_weight(dy, x, cuda::LtMat<float>{out, N, K, K}, st);
}

// The same through cublasSgemm on the fp32 copies, mapped to column-major as gemm_lt.hpp says.
void sgemm_call(cublasHandle_t h, Buffers& b, int set, Form f, float* out) {
  const Set& t = b.sets[size_t(set)];
  const int M = int(b.s.M), N = int(b.s.N), K = int(b.s.K);
  const float one = 1.f, zero = 0.f;
  if (f == Form::forward)
    FUSELLM_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, t.w32.get(), K, t.x32.get(), K,
                                     &zero, out, N));
  else if (f == Form::backward_input)
    FUSELLM_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one, t.w32.get(), K, t.dy32.get(), N,
                                     &zero, out, K));
  else
    FUSELLM_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, &one, t.x32.get(), K, t.dy32.get(), N,
                                     &one, out, K));
}

// Median milliseconds of `reps` calls after the warm-up, call(set) rotating over the sets.
double time_ms(cudaStream_t st, int reps, int nsets, const std::function<void(int)>& call) {
  cuda::Event a, b;
  std::vector<double> ms;
  for (int r = 0; r < kWarmup + reps; ++r) {
    cuda::spin_for(st, kSpinNs);
    a.record(st);
    call(r % nsets);
    b.record(st);
    b.synchronize();
    if (r >= kWarmup) ms.push_back(double(cuda::elapsed_ms(a, b)));
  }
  return bench::median(ms);
}

struct Ctx {
  cuda::Stream stream;
  cuda::LtGemm lt;
  cublasHandle_t blas = nullptr;
  int reps = 30;
  size_t l2_bytes = 0;
  double ref_tflops = 0.0;  // 8192^3 forward bf16
  bool failed = false;
  Ctx() { FUSELLM_CUBLAS_CHECK(cublasCreate(&blas)); }
  ~Ctx() { cublasDestroy(blas); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
};

// LtGemm's result against the pedantic fp32 SGEMM's on set 0 (outputs zeroed first).
double check_against_sgemm(Ctx& c, Buffers& b, Form f) {
  const size_t n = out_elems(b.s, f);
  float* mine = b.scratch.get();
  float* theirs = out_of(b, f);
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(mine, 0, n * sizeof(float), c.stream));
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(theirs, 0, n * sizeof(float), c.stream));
  lt_call(c.lt, b, 0, f, mine, c.stream);
  FUSELLM_CUBLAS_CHECK(cublasSetMathMode(c.blas, CUBLAS_PEDANTIC_MATH));
  sgemm_call(c.blas, b, 0, f, theirs);
  return rel_diff(mine, theirs, n, c.stream);
}

void bench_form(Ctx& c, Buffers& b, Form f, int nsets) {
  const double flop = 2.0 * double(b.s.M) * double(b.s.N) * double(b.s.K);
  float* out = out_of(b, f);
  const double lt_ms = time_ms(c.stream, c.reps, nsets, [&](int i) { lt_call(c.lt, b, i, f, out, c.stream); });
  FUSELLM_CUBLAS_CHECK(cublasSetMathMode(c.blas, CUBLAS_PEDANTIC_MATH));
  const double fp32_ms = time_ms(c.stream, c.reps, nsets, [&](int i) { sgemm_call(c.blas, b, i, f, out); });
  FUSELLM_CUBLAS_CHECK(cublasSetMathMode(c.blas, CUBLAS_TF32_TENSOR_OP_MATH));
  const double tf32_ms = time_ms(c.stream, c.reps, nsets, [&](int i) { sgemm_call(c.blas, b, i, f, out); });
  const double diff = check_against_sgemm(c, b, f), limit = 2.0 * fp32_bound(sum_length(b.s, f));
  const bool ok = diff <= limit;  // false for NaN too
  c.failed |= !ok;
  auto tflops = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
  if (c.ref_tflops == 0.0) c.ref_tflops = tflops(lt_ms);
  std::printf("%-8s M=%-5lld N=%-5lld K=%-5lld %-15s  bf16 LtGemm %8.3f ms %7.1f TFLOP/s (%.2f of 8192^3)"
              "  |  fp32 SGEMM %8.3f ms %6.1f TFLOP/s  |  tf32 SGEMM %8.3f ms %6.1f TFLOP/s  |  vs fp32 %.1e%s\n",
              b.s.name, (long long)b.s.M, (long long)b.s.N, (long long)b.s.K, form_name(f), lt_ms, tflops(lt_ms),
              tflops(lt_ms) / c.ref_tflops, fp32_ms, tflops(fp32_ms), tf32_ms, tflops(tf32_ms), diff,
              ok ? "" : "  CHECK FAILED");
  std::fflush(stdout);
}

// Enough input sets that they fill the L2 cache twice over (2 to 8).
int sets_for(const Shape& s, size_t l2_bytes) {
  const double set_bytes = 2.0 * double(s.M * s.K + s.N * s.K + s.M * s.N);
  return int(std::clamp(std::ceil(2.0 * double(l2_bytes) / set_bytes), 2.0, 8.0));
}

void bench_shape(Ctx& c, const Shape& s) {
  const int nsets = sets_for(s, c.l2_bytes);
  Buffers b = make_buffers(s, nsets, c.stream);
  for (Form f : kForms) bench_form(c, b, f, nsets);
}

// --small: every LtGemm operation on small shapes against a float64 CPU reference.
struct HostOperands {
  std::vector<float> x, w, dy, bias;  // set 0's fp32 copies (bf16-exact) and the bias
};

// Output element (i, j) of the form, summed in float64.
double reference(const HostOperands& h, const Shape& s, Form f, int64_t i, int64_t j) {
  const int64_t N = s.N, K = s.K;
  double sum = 0.0;
  if (f == Form::forward)  // y [i, j] = sum_k x [i, k] W [j, k]
    for (int64_t k = 0; k < K; ++k) sum += double(h.x[size_t(i * K + k)]) * double(h.w[size_t(j * K + k)]);
  else if (f == Form::backward_input)  // dx [i, j] = sum_n dy [i, n] W [n, j]
    for (int64_t n = 0; n < N; ++n) sum += double(h.dy[size_t(i * N + n)]) * double(h.w[size_t(n * K + j)]);
  else  // dW [i, j] = sum_m dy [m, i] x [m, j]
    for (int64_t m = 0; m < s.M; ++m) sum += double(h.dy[size_t(m * N + i)]) * double(h.x[size_t(m * K + j)]);
  return sum;
}

// The output before the call: random when the call accumulates (returned), else NaN (every byte 0xff).
std::vector<float> prepare_output(Buffers& b, Form f, bool bf16_out, bool prior, cudaStream_t st) {
  const size_t n = out_elems(b.s, f);
  float* out = out_of(b, f);
  if (prior) fill(nullptr, out, n, 77, st);
  else if (bf16_out) FUSELLM_CUDA_CHECK(cudaMemsetAsync(b.y16.get(), 0xff, n * sizeof(bf16), st));
  else FUSELLM_CUDA_CHECK(cudaMemsetAsync(out, 0xff, n * sizeof(float), st));
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(st));
  return prior ? cuda::to_host(out, n) : std::vector<float>();
}

// One call; `extras`: the forward's bias and accumulate, the backward input's accumulate.
std::vector<float> small_call(cuda::LtGemm& lt, Buffers& b, Form f, bool bf16_out, bool extras, cudaStream_t st) {
  const Set& t = b.sets[0];
  const int64_t M = b.s.M, N = b.s.N, K = b.s.K;
  const cuda::LtIn x{t.x16.get(), M, K, K}, w{t.w16.get(), N, K, K}, dy{t.dy16.get(), M, N, N};
  float* out = out_of(b, f);
  if (f == Form::forward && bf16_out) lt.forward(x, w, nullptr, cuda::LtMat<bf16>{b.y16.get(), M, N, N}, false, st);
  else if (f == Form::forward) lt.forward(x, w, extras ? b.bias.get() : nullptr, {out, M, N, N}, extras, st);
  else if (f == Form::backward_input) lt.backward_input(dy, w, {out, M, K, K}, extras, st);
  else lt.backward_weight(dy, x, {out, N, K, K}, st);
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(st));
  const size_t n = out_elems(b.s, f);
  if (!bf16_out) return cuda::to_host(out, n);
  const std::vector<bf16> h = cuda::to_host(b.y16.get(), n);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = __bfloat162float(h[i]);
  return v;
}

bool small_case(cuda::LtGemm& lt, Buffers& b, const HostOperands& h, Form f, bool bf16_out, bool extras,
                cudaStream_t st) {
  const bool prior = extras || f == Form::backward_weight;
  const std::vector<float> before = prepare_output(b, f, bf16_out, prior, st);
  const std::vector<float> got = small_call(lt, b, f, bf16_out, extras, st);
  const Shape& s = b.s;
  const int64_t cols = f == Form::forward ? s.N : s.K;
  double d2 = 0.0, r2 = 0.0;
  int64_t nan = 0;
  for (size_t e = 0; e < got.size(); ++e) {
    const int64_t i = int64_t(e) / cols, j = int64_t(e) % cols;
    double want = reference(h, s, f, i, j) + (prior ? double(before[e]) : 0.0);
    if (f == Form::forward && extras) want += double(h.bias[size_t(j)]);
    nan += std::isnan(got[e]);
    d2 += (double(got[e]) - want) * (double(got[e]) - want), r2 += want * want;
  }
  const double err = std::sqrt(d2 / r2), limit = bf16_out ? 1e-2 : fp32_bound(sum_length(s, f));
  const bool ok = nan == 0 && err <= limit;
  std::printf("small M=%-3lld N=%-3lld K=%-3lld %-15s %s%s: rel err %.2e (bound %.0e), %lld NaN: %s\n",
              (long long)s.M, (long long)s.N, (long long)s.K, form_name(f), bf16_out ? "bf16-out" : "fp32-out",
              extras ? (f == Form::forward ? " bias accumulate" : " accumulate") : "", err, limit, (long long)nan,
              ok ? "ok" : "FAILED");
  return ok;
}

bool run_small(cuda::LtGemm& lt, cudaStream_t st) {
  const Shape shapes[] = {{"", 1, 40, 24}, {"", 17, 24, 136}, {"", 64, 96, 40}, {"", 33, 264, 72}};
  bool ok = true;
  for (const Shape& s : shapes) {
    Buffers b = make_buffers(s, 1, st);
    const Set& t = b.sets[0];
    const HostOperands h{cuda::to_host(t.x32.get(), size_t(s.M * s.K)), cuda::to_host(t.w32.get(), size_t(s.N * s.K)),
                         cuda::to_host(t.dy32.get(), size_t(s.M * s.N)), cuda::to_host(b.bias.get(), size_t(s.N))};
    for (Form f : kForms) {
      ok &= small_case(lt, b, h, f, false, false, st);
      if (f != Form::backward_weight) ok &= small_case(lt, b, h, f, false, true, st);
    }
    ok &= small_case(lt, b, h, Form::forward, true, false, st);
  }
  std::printf("bench_gemm_cuda --small: %s\n", ok ? "all checks passed" : "SOME CHECKS FAILED");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  bool small = false;
  int reps = 30;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--small") == 0) small = true;
    else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::max(20, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_gemm_cuda [--small] [--reps N]\n");
      return 2;
    }
  }
  if (cuda::device_count() == 0) {
    std::printf("bench_gemm_cuda: %s: nothing measured\n", cuda::device_description().c_str());
    return 0;
  }
  try {
    Ctx c;
    c.reps = reps;
    FUSELLM_CUBLAS_CHECK(cublasSetStream(c.blas, c.stream));
    std::printf("device: %s\n", cuda::device_description().c_str());
    if (small) return run_small(c.lt, c.stream) ? 0 : 1;
    int dev = 0, l2 = 0;
    FUSELLM_CUDA_CHECK(cudaGetDevice(&dev));
    FUSELLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    c.l2_bytes = size_t(l2);
    std::printf("median of %d calls after %d warm-up, inputs rotated over >= 2 sets (L2 %.0f MiB)\n", reps, kWarmup,
                double(l2) / 1048576.0);
    const Shape shapes[] = {{"8192^3", 8192, 8192, 8192}, {"qkv", 2048, 6144, 2048},    {"o", 2048, 2048, 2048},
                            {"gate_up", 2048, 11264, 2048}, {"down", 2048, 2048, 5632}, {"head", 2048, 32000, 2048}};
    for (const Shape& s : shapes) bench_shape(c, s);
    std::printf("bf16 8192^3 forward: %.1f TFLOP/s (the rate the training benchmark's MFU divides by)%s\n",
                c.ref_tflops, c.failed ? "; SOME CHECKS FAILED" : "");
    return c.failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm_cuda: %s\n", e.what());
    return 1;
  }
}
