// The optimizer step on the GPU (kernels/cuda/adamw.cu, bf16_convert.cu) against the CPU optimizer
// (optim/adamw.cpp AdamW::step, grad_clip.cpp, flat_param_grads.cpp) on seeded random parameters
// and gradients of a small table (4921 floats: not a multiple of any block size; a norm, a bias
// and adjacent exempt tensors among them):
//   - several steps over the whole buffer with the clipping done on the device (coefficient from
//     the device norm), clipping active in some steps and not in others;
//   - a ZeRO-1 shard [begin, end) cutting tensors, with the host clip scale: only the shard's
//     weights and bf16 copy change;
//   - the weight-decay exemptions (bounds vs flat_param_grads' flags; exact decay with zero grads);
//   - the bf16 copy and the conversion kernels against round-to-nearest-even on the host;
//   - the gradient norm against the CPU's (bound below) and bit-identical between two GPU runs;
//   - the clipping coefficient bit for bit; a NaN gradient reported at the CPU's tensor.
//
// Bounds. The kernel does the CPU's operations in the CPU's order without contraction (adamw.cuh),
// so given the same gradients and clipping coefficient m, v and the weights agree to the bit (a
// host emulation of the kernel did, over 20 steps); a CPU build that contracts p * decay + step
// into one fma, or a device coefficient an ulp off the CPU's, makes them differ by a few ulp. They
// are asserted within 1e-5 of the largest magnitude, and the number of elements that differ at
// all is printed (0 expected). The sum of squares: the squares are exact
// in double and both sides add the same n positive terms in different orders, each within
// (n - 1) 2^-53 of the exact sum, so they differ by at most 2 (n - 1) 2^-53 relative.
// Skips, saying why, when the machine has no usable CUDA device (the argument checks run anyway).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda/adamw.cuh"
#include "cuda/adamw.hpp"
#include "cuda/bf16_convert.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda_skip.hpp"
#include "error_of.hpp"
#include "fusellm/core/param_table.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/flat_param_grads.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "fusellm/optim/optim_state.hpp"
#include "small_param_table.hpp"

namespace fusellm {
namespace {

using cuda::dev_alloc;
using cuda::DevPtr;
using cuda::to_device;
using cuda::to_host;
using testing::normal_values;

constexpr unsigned long long kNone = std::numeric_limits<unsigned long long>::max();

// 4921 floats; the exempt tensors: input_layernorm, q_proj.bias + post_attention_layernorm
// (adjacent: one merged range), model.norm.
ParamTable table() {
  ParamTable t;
  t.add("model.embed_tokens.weight", {50, 37});
  t.add("model.layers.0.input_layernorm.weight", {37});
  t.add("model.layers.0.self_attn.q_proj.weight", {37, 37});
  t.add("model.layers.0.self_attn.q_proj.bias", {37});
  t.add("model.layers.0.post_attention_layernorm.weight", {37});
  t.add("model.layers.0.mlp.up_proj.weight", {29, 37});
  t.add("model.norm.weight", {37});
  t.add("lm_head.weight", {13, 37});
  return t;
}

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// c10::BFloat16's round_to_nearest_even, for non-NaN x.
uint16_t rne_bf16(float x) {
  const uint32_t u = bits(x);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// |gpu - ref| <= rel * max |ref| everywhere; fails naming the first element beyond it. Prints how
// many elements differ at all (0 is what adamw.cuh predicts for m and v).
void expect_close(const char* what, const std::vector<float>& gpu, const std::vector<float>& ref, double rel) {
  ASSERT_EQ(gpu.size(), ref.size()) << what;
  double max_ref = 0;
  for (float r : ref) max_ref = std::max(max_ref, double(std::abs(r)));
  const double tol = rel * max_ref;
  size_t differ = 0;
  double max_err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::abs(double(gpu[i]) - double(ref[i]));
    if (bits(gpu[i]) != bits(ref[i])) ++differ;
    max_err = std::max(max_err, d);
    if (!(d <= tol)) {
      ADD_FAILURE() << what << ": element " << i << " is " << gpu[i] << " on the GPU, " << ref[i]
                    << " on the CPU (|diff| " << d << " > " << tol << ")";
      return;
    }
  }
  std::printf("    %s: %zu of %zu elements differ in bits, max |diff| %.3g (max |ref| %.3g)\n", what, differ,
              ref.size(), max_err, max_ref);
}

// The bf16 copy must be exactly the rounding of the fp32 weights, over [begin, end); 0xFFFF (the
// poison) elsewhere.
void expect_bf16_copy(const std::vector<uint16_t>& b, const std::vector<float>& p, int64_t begin, int64_t end) {
  for (int64_t i = 0; i < int64_t(p.size()); ++i) {
    const uint16_t want = i >= begin && i < end ? rne_bf16(p[size_t(i)]) : uint16_t(0xffff);
    if (b[size_t(i)] != want) {
      ADD_FAILURE() << "bf16 copy: element " << i << " is 0x" << std::hex << b[size_t(i)] << ", expected 0x" << want
                    << std::dec << " (fp32 weight " << p[size_t(i)] << ")";
      return;
    }
  }
}

// The GPU side of an optimizer over [begin, end) of the table's buffers.
struct GpuOptimizer {
  int64_t total, begin, end;
  DevPtr<float> params, grads, m, v, coef;
  DevPtr<uint16_t> bf16;
  DevPtr<int64_t> bounds;
  int64_t n_bounds;
  DevPtr<double> sq, norm, ws;
  DevPtr<unsigned long long> bad;

  GpuOptimizer(const ParamTable& t, const std::vector<float>& p0, int64_t b, int64_t e)
      : total(t.total()), begin(b), end(e), params(to_device(p0)), grads(dev_alloc<float>(size_t(total))),
        m(to_device(std::vector<float>(size_t(e - b), 0.f))), v(to_device(std::vector<float>(size_t(e - b), 0.f))),
        coef(dev_alloc<float>(1)), bf16(dev_alloc<uint16_t>(size_t(total))), n_bounds(0), sq(dev_alloc<double>(1)),
        norm(dev_alloc<double>(1)), ws(dev_alloc<double>(cuda::kGradSqSumWorkspace)),
        bad(to_device(std::vector<unsigned long long>{kNone})) {
    const std::vector<int64_t> nb = cuda::no_decay_bounds(t, b, e);
    n_bounds = int64_t(nb.size());
    bounds = to_device(nb);
    FUSELLM_CUDA_CHECK(cudaMemset(bf16.get(), 0xff, size_t(total) * 2));
  }

  cuda::AdamWRange range() const {
    cuda::AdamWRange r;
    r.params = params.get();
    r.grads = grads.get();
    r.m = m.get();
    r.v = v.get();
    r.params_bf16 = reinterpret_cast<__nv_bfloat16*>(bf16.get());
    r.offset = begin;
    r.n = end - begin;
    r.no_decay_bounds = bounds.get();
    r.n_bounds = n_bounds;
    r.first_nonfinite = bad.get();
    return r;
  }

  void upload_grads(const std::vector<float>& g) {
    FUSELLM_CUDA_CHECK(cudaMemcpy(grads.get(), g.data(), g.size() * 4, cudaMemcpyHostToDevice));
  }
  // Norm and coefficient on the device, then the step reading the coefficient there.
  void step_device_clip(const AdamWOptions& o, double lr, int64_t t, double max_norm) {
    cuda::grad_sq_sum(sq.get(), grads.get() + begin, end - begin, ws.get(), nullptr);
    cuda::clip_coef(coef.get(), norm.get(), sq.get(), max_norm, nullptr);
    cuda::adamw_step(range(), cuda::adamw_scalars(cuda::adamw_hyper(o), lr, t), coef.get(), 1.f, nullptr);
  }
  void step_host_scale(const AdamWOptions& o, double lr, int64_t t, float scale) {
    cuda::adamw_step(range(), cuda::adamw_scalars(cuda::adamw_hyper(o), lr, t), nullptr, scale, nullptr);
  }
  std::vector<float> host_params() const { return to_host(params.get(), size_t(total)); }
  std::vector<uint16_t> host_bf16() const { return to_host(bf16.get(), size_t(total)); }
  std::vector<float> host_m() const { return to_host(m.get(), size_t(end - begin)); }
  std::vector<float> host_v() const { return to_host(v.get(), size_t(end - begin)); }
  double host_sq() const { return to_host(sq.get(), 1)[0]; }
  unsigned long long host_bad() const { return to_host(bad.get(), 1)[0]; }
};

// The factor clip_to_norm scales by (1 when it does not scale).
float cpu_clip_scale(double norm, double max_norm) {
  if (max_norm <= 0) return 1.f;
  const double c = clip_coef(norm, max_norm);
  return c >= 1.0 ? 1.f : float(c);
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b); }

TEST(CudaAdamW, WholeBufferMatchesCpuOverSteps) {
  SKIP_WITHOUT_GPU();
  const ParamTable t = table();
  const int64_t n = t.total();
  const AdamWOptions o{0.9, 0.95, 1e-8, 0.1};
  std::vector<float> cpu_p = normal_values(n, 0.5f, 1);
  GpuOptimizer gpu(t, cpu_p, 0, n);
  AdamW cpu(o);
  const double max_norm = 1.0;
  for (int64_t step = 1; step <= 6; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const double lr = 1e-2 * double(step);
    // Gradient norms about 0.07 (odd steps: no clipping) and 7 (even steps: clipped to 1).
    std::vector<float> g = normal_values(n, step % 2 ? 1e-3f : 0.1f, uint64_t(100 + step));
    gpu.upload_grads(g);
    gpu.step_device_clip(o, lr, step, max_norm);

    std::vector<ParamGrad> pgs = flat_param_grads(t, cpu_p, g);
    const double cpu_sq = grad_sq_sum(pgs);
    const double cpu_norm = clip_grad_norm(pgs, max_norm);
    ASSERT_EQ(cpu.step(pgs, lr), "");

    const double gpu_sq = gpu.host_sq();
    EXPECT_LE(std::abs(gpu_sq - cpu_sq), 2.0 * double(n - 1) * 0x1p-53 * cpu_sq) << gpu_sq << " vs " << cpu_sq;
    const float gpu_coef = to_host(gpu.coef.get(), 1)[0], cpu_coef = cpu_clip_scale(cpu_norm, max_norm);
    EXPECT_NEAR(gpu_coef, cpu_coef, 1e-6 * cpu_coef);
    if (step % 2 == 0) EXPECT_LT(cpu_coef, 1.f) << "clipping should be active on even steps";
    else EXPECT_EQ(cpu_coef, 1.f);

    std::vector<float> cm(static_cast<size_t>(n)), cv(static_cast<size_t>(n));
    flat_moments(cpu, t, 0, n, cm, cv);
    const std::vector<float> gp = gpu.host_params();
    expect_close("params", gp, cpu_p, 1e-5);
    expect_close("exp_avg", gpu.host_m(), cm, 1e-5);
    expect_close("exp_avg_sq", gpu.host_v(), cv, 1e-5);
    expect_bf16_copy(gpu.host_bf16(), gp, 0, n);
    EXPECT_EQ(gpu.host_bad(), kNone);
  }
}

TEST(CudaAdamW, ShardRangeWithOffsetAndHostScale) {
  SKIP_WITHOUT_GPU();
  const ParamTable t = table();
  const int64_t n = t.total(), begin = 1000, end = 3500;  // cuts embed_tokens and up_proj
  const AdamWOptions o{0.9, 0.999, 1e-6, 0.05};
  const std::vector<float> p0 = normal_values(n, 1.f, 2);
  std::vector<float> cpu_p = p0;
  GpuOptimizer gpu(t, p0, begin, end);
  AdamW cpu(o);
  for (int64_t step = 1; step <= 4; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    std::vector<float> g = normal_values(n, 0.05f, uint64_t(200 + step));
    gpu.upload_grads(g);
    // dist/zero1.cpp Zero1::clip with one rank: the shard's norm, its coefficient on the host.
    std::vector<ParamGrad> shard = flat_param_grads(t, cpu_p, g, begin, end);
    const double norm = std::sqrt(grad_sq_sum(shard));
    const double max_norm = 0.5;
    clip_to_norm(shard, norm, max_norm);
    ASSERT_EQ(cpu.step(shard, 3e-3), "");
    const float scale = cpu_clip_scale(norm, max_norm);
    EXPECT_LT(scale, 1.f);
    gpu.step_host_scale(o, 3e-3, step, scale);

    std::vector<float> cm(static_cast<size_t>(end - begin)), cv(static_cast<size_t>(end - begin));
    flat_moments(cpu, t, begin, end, cm, cv);
    const std::vector<float> gp = gpu.host_params();
    expect_close("params", gp, cpu_p, 1e-5);
    for (int64_t i = 0; i < n; ++i)
      if ((i < begin || i >= end) && bits(gp[size_t(i)]) != bits(p0[size_t(i)])) {
        ADD_FAILURE() << "weight " << i << " outside the shard [" << begin << ", " << end << ") changed";
        break;
      }
    expect_close("exp_avg", gpu.host_m(), cm, 1e-5);
    expect_close("exp_avg_sq", gpu.host_v(), cv, 1e-5);
    expect_bf16_copy(gpu.host_bf16(), gp, begin, end);
  }
}

// Host only: the bounds mark exactly the elements flat_param_grads does not decay.
TEST(CudaAdamW, NoDecayBoundsMatchFlatParamGrads) {
  const ParamTable t = table();
  const int64_t n = t.total();
  std::vector<float> p(static_cast<size_t>(n)), g(static_cast<size_t>(n));
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, n}, {1000, 3500}, {1860, 1870}, {0, 0}}) {
    SCOPED_TRACE("range [" + std::to_string(b) + ", " + std::to_string(e) + ")");
    std::vector<char> exempt(size_t(n), 0);
    for (const ParamGrad& pg : flat_param_grads(t, p, g, b, e))
      if (!pg.weight_decay)
        for (size_t k = 0; k < pg.param.size(); ++k) exempt[size_t(pg.param.data() - p.data()) + k] = 1;
    const std::vector<int64_t> nb = cuda::no_decay_bounds(t, b, e);
    ASSERT_EQ(nb.size() % 2, 0u);
    std::vector<char> got(size_t(n), 0);
    for (size_t k = 0; k < nb.size(); k += 2) {
      ASSERT_LT(nb[k], nb[k + 1]);
      if (k) ASSERT_LT(nb[k - 1], nb[k]) << "adjacent runs should be merged";
      for (int64_t j = nb[k]; j < nb[k + 1]; ++j) got[size_t(j)] = 1;
    }
    EXPECT_EQ(got, exempt);
  }
  // The whole table: input_layernorm; q_proj.bias + post_attention_layernorm merged; model.norm.
  EXPECT_EQ(cuda::no_decay_bounds(t).size(), 6u);
}

// Zero gradients and moments leave p * decay exactly (the update is -0): the decay reaches exactly
// the non-exempt elements of the range.
TEST(CudaAdamW, WeightDecayOnlyWhereTheCpuDecays) {
  SKIP_WITHOUT_GPU();
  const ParamTable t = table();
  const int64_t n = t.total(), begin = 1000, end = 3500;
  const std::vector<float> p0 = normal_values(n, 1.f, 3);
  GpuOptimizer gpu(t, p0, begin, end);
  gpu.upload_grads(std::vector<float>(size_t(n), 0.f));
  const AdamWOptions o{0.9, 0.95, 1e-8, 0.5};
  const double lr = 0.1;
  gpu.step_host_scale(o, lr, 1, 1.f);
  const std::vector<float> gp = gpu.host_params();
  const float decay = float(1 - lr * o.weight_decay);
  std::vector<float> p = p0, g(static_cast<size_t>(n));
  std::vector<char> decays(size_t(n), 0);
  for (const ParamGrad& pg : flat_param_grads(t, p, g, begin, end))
    for (size_t k = 0; k < pg.param.size(); ++k) decays[size_t(pg.param.data() - p.data()) + k] = pg.weight_decay;
  for (int64_t i = 0; i < n; ++i) {
    const bool in = i >= begin && i < end;
    const float want = in && decays[size_t(i)] ? p0[size_t(i)] * decay : p0[size_t(i)];
    if (bits(gp[size_t(i)]) != bits(want)) {
      ADD_FAILURE() << "element " << i << " (" << (in ? "in" : "outside") << " the range, "
                    << (decays[size_t(i)] ? "decays" : "exempt") << "): " << gp[size_t(i)] << ", expected " << want;
      break;
    }
  }
}

TEST(CudaAdamW, NonFiniteReportedAtTheCpusTensor) {
  SKIP_WITHOUT_GPU();
  const ParamTable t = table();
  const int64_t n = t.total();
  const AdamWOptions o;
  std::vector<float> p = normal_values(n, 1.f, 4), g = normal_values(n, 0.1f, 5);
  g[3000] = std::numeric_limits<float>::infinity();
  g[2000] = std::numeric_limits<float>::quiet_NaN();
  GpuOptimizer gpu(t, p, 0, n);
  gpu.upload_grads(g);
  gpu.step_host_scale(o, 1e-3, 1, 1.f);
  AdamW cpu(o);
  const std::string cpu_bad = cpu.step(flat_param_grads(t, p, g), 1e-3);
  const unsigned long long at = gpu.host_bad();
  ASSERT_EQ(at, 2000u);
  const ParamEntry* hit = nullptr;
  for (const ParamEntry& e : t.entries())
    if (int64_t(at) >= e.offset && int64_t(at) < e.offset + e.size) hit = &e;
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->name, cpu_bad);
}

TEST(CudaGradNorm, MatchesCpuAndIsReproducible) {
  SKIP_WITHOUT_GPU();
  DevPtr<double> ws = dev_alloc<double>(cuda::kGradSqSumWorkspace), s1 = dev_alloc<double>(1),
                 s2 = dev_alloc<double>(1);
  // One block, exactly one block, the table, beyond the largest grid (grid-stride), and empty.
  for (int64_t n : {int64_t(1), int64_t(511), int64_t(512), int64_t(4921), int64_t(600001), int64_t(0)}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    std::vector<float> g = normal_values(n, 0.3f, uint64_t(n));
    DevPtr<float> dg = to_device(g);
    cuda::grad_sq_sum(s1.get(), dg.get(), n, ws.get(), nullptr);
    cuda::grad_sq_sum(s2.get(), dg.get(), n, ws.get(), nullptr);
    const double a = to_host(s1.get(), 1)[0], b = to_host(s2.get(), 1)[0];
    std::vector<float> p(g.size());
    const std::vector<ParamGrad> pg{{"g", p, g, true}};
    const double cpu = grad_sq_sum(pg);
    EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "two runs: " << a << " and " << b;
    EXPECT_LE(std::abs(a - cpu), 2.0 * double(std::max<int64_t>(n - 1, 0)) * 0x1p-53 * cpu)
        << "GPU " << a << ", CPU " << cpu;
  }
  // Non-finite gradients propagate as on the CPU.
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> g = normal_values(3000, 1.f, 9);
    g[1234] = bad;
    DevPtr<float> dg = to_device(g);
    cuda::grad_sq_sum(s1.get(), dg.get(), 3000, ws.get(), nullptr);
    const double a = to_host(s1.get(), 1)[0];
    if (std::isnan(bad)) EXPECT_TRUE(std::isnan(a)) << a;
    else EXPECT_EQ(a, std::numeric_limits<double>::infinity());
  }
}

TEST(CudaGradNorm, ClipCoefficientBitForBit) {
  SKIP_WITHOUT_GPU();
  DevPtr<double> sq = dev_alloc<double>(1), norm = dev_alloc<double>(1);
  DevPtr<float> coef = dev_alloc<float>(1);
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (double s : {0.0, 1e-14, 0.25, 0.999999, 1.0, 1.0000001, 2.0, 4.0, 7.3e6, inf, nan})
    for (double max_norm : {1.0, 0.5, 3.7, 0.0, -1.0}) {
      SCOPED_TRACE("sum of squares " + std::to_string(s) + ", max_norm " + std::to_string(max_norm));
      FUSELLM_CUDA_CHECK(cudaMemcpy(sq.get(), &s, sizeof s, cudaMemcpyHostToDevice));
      cuda::clip_coef(coef.get(), norm.get(), sq.get(), max_norm, nullptr);
      const double nrm = to_host(norm.get(), 1)[0], want_norm = std::sqrt(s);
      const float c = to_host(coef.get(), 1)[0], want = cpu_clip_scale(want_norm, max_norm);
      EXPECT_TRUE(std::isnan(want_norm) ? std::isnan(nrm) : nrm == want_norm) << nrm << " vs " << want_norm;
      EXPECT_TRUE(same_float(c, want)) << c << " vs " << want;
    }
}

TEST(CudaBf16, ConversionsRoundToNearestEven) {
  SKIP_WITHOUT_GPU();
  // Every bf16 pattern widened (exact), ties both ways, overflow, subnormals, zeros, random values.
  std::vector<float> x;
  for (uint32_t h = 0; h < 65536; ++h) x.push_back(from_bits(h << 16));
  for (uint32_t u : {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u,
                     0x00008000u, 0x00018000u, 0x00000001u, 0x80000001u, 0x007fffffu, 0x80000000u})
    x.push_back(from_bits(u));
  for (float r : normal_values(4099, 3.f, 11)) x.push_back(r);
  for (float r : normal_values(1000, 1e-39f, 12)) x.push_back(r);  // fp32 subnormals
  const int64_t n = int64_t(x.size());
  DevPtr<float> dx = to_device(x), back = dev_alloc<float>(size_t(n));
  DevPtr<uint16_t> db = dev_alloc<uint16_t>(size_t(n));
  auto* b16 = reinterpret_cast<__nv_bfloat16*>(db.get());
  cuda::f32_to_bf16(b16, dx.get(), n);
  cuda::bf16_to_f32(back.get(), b16, n);
  const std::vector<uint16_t> b = to_host(db.get(), size_t(n));
  const std::vector<float> w = to_host(back.get(), size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const float xi = x[size_t(i)];
    const bool nan = std::isnan(xi);
    const bool ok = nan ? (b[size_t(i)] & 0x7fffu) > 0x7f80u : b[size_t(i)] == rne_bf16(xi);
    if (!ok) {
      ADD_FAILURE() << "f32_to_bf16: element " << i << " (0x" << std::hex << bits(xi) << ") gave 0x" << b[size_t(i)]
                    << ", expected 0x" << rne_bf16(xi) << std::dec;
      break;
    }
    if (bits(w[size_t(i)]) != uint32_t(b[size_t(i)]) << 16) {
      ADD_FAILURE() << "bf16_to_f32: element " << i << " is not exact";
      break;
    }
  }
  cuda::f32_to_bf16(nullptr, nullptr, 0);  // empty: nothing to do, no error
}

// Argument checks happen before any CUDA call: these run without a GPU.
TEST(CudaAdamW, ArgumentErrors) {
  using testing::expect_error;
  cuda::AdamWRange r;
  r.n = 10;
  const cuda::AdamWScalars k;
  expect_error([&] { cuda::adamw_step(r, k, nullptr, 1.f, nullptr); }, {"adamw_step", "null pointer", "10"});
  r.n_bounds = 3;
  expect_error([&] { cuda::adamw_step(r, k, nullptr, 1.f, nullptr); }, {"adamw_step", "3 no-decay bounds"});
  r.n_bounds = 0;
  r.n = -1;
  expect_error([&] { cuda::adamw_step(r, k, nullptr, 1.f, nullptr); }, {"adamw_step", "-1 elements"});
  expect_error([] { cuda::adamw_scalars({}, 1e-3, 0); }, {"adamw_scalars", "step count 0"});
  expect_error([] { cuda::grad_sq_sum(nullptr, nullptr, 5, nullptr, nullptr); }, {"grad_sq_sum", "null pointer"});
  expect_error([] { cuda::f32_to_bf16(nullptr, nullptr, 7); }, {"f32_to_bf16", "7 elements"});
  expect_error([] { cuda::no_decay_bounds(table(), 10, 5); }, {"no_decay_bounds", "[10, 5)"});
}

// The scalars as AdamW::step computes them (its comments), at a few steps.
TEST(CudaAdamW, ScalarsAsTheCpuRoundsThem) {
  const cuda::AdamWHyper h{0.9, 0.95, 1e-8, 0.1};
  for (int64_t t : {1, 2, 10, 1000}) {
    const double lr = 3e-4;
    const cuda::AdamWScalars k = cuda::adamw_scalars(h, lr, t);
    EXPECT_EQ(k.lerp_w, float(1 - 0.9));
    EXPECT_EQ(k.beta2, 0.95f);
    EXPECT_EQ(k.one_minus_beta2, float(1 - 0.95));
    EXPECT_EQ(k.bc2_sqrt, float(std::pow(1 - std::pow(0.95, double(t)), 0.5)));
    EXPECT_EQ(k.neg_step_size, float(-(lr / (1 - std::pow(0.9, double(t))))));
    EXPECT_EQ(k.decay, float(1 - lr * 0.1));
    EXPECT_EQ(k.eps, 1e-8f);
  }
}

}  // namespace
}  // namespace fusellm
