// The fp32 CPU backward pass of the Llama family against PyTorch autograd: the fixtures in
// tests/fixtures/grads/ (made by tests/reference/gen_grads.py with torch 2.5.1 and transformers
// 4.46.3) hold tiny checkpoints (GQA untied; MQA with tied embeddings; Qwen2 with q/k/v biases)
// and the gradient of every parameter for the FuseLLM objective with sparse fused targets:
// CLM only (lambda = 1), fusion only (lambda = 0), their mix (lambda = 0.9), and a packed case
// (three documents, mix), and a long one (160 tokens, two documents: several query blocks).
//
// dL/dlogits is computed here by the reference formula (paper eq. 5, what the fused classifier
// kernel computes): for a position with gold >= 0, (softmax(z) - lambda onehot(gold)
// - (1 - lambda) p_fused) / N, N the number of such positions; 0 elsewhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/llama_train.hpp"
#include "fusellm/model/model.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "grads";
// max |ours - ref| / max |ref|, per parameter. fp32 autograd against fp32 C++: each gradient is a
// GEMM over T positions in another order (and FMA or not, by BLAS kernel), ~1e-6 relative to the
// tensor's largest entry (1.7e-6 seen); 1e-4 is ~60x that, a wrong term is O(1).
constexpr double kTolerance = 1e-4;

std::vector<int32_t> read_i32(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  if (!t || t->dtype != DType::I32) throw Error(name + ": missing or not I32");
  std::vector<int32_t> v(t->bytes.size() / 4);
  std::memcpy(v.data(), t->bytes.data(), t->bytes.size());
  return v;
}

Tensor read_f32(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  if (!t) throw Error(name + ": missing");
  Tensor out(t->shape);
  convert_to_f32(*t, out.span());
  return out;
}

// The reference loss and its gradient on the logits (in place), averaged over gold >= 0.
double loss_and_grad(Tensor& logits, std::span<const int32_t> gold, std::span<const int32_t> tid,
                     std::span<const float> tp, int64_t K, double lambda) {
  const int64_t T = logits.dim(0), V = logits.dim(1);
  int64_t n = 0;
  for (int32_t g : gold) n += g >= 0;
  double loss = 0;
  for (int64_t t = 0; t < T; ++t) {
    std::span<float> z = logits.row(t);
    if (gold[t] < 0) {
      std::fill(z.begin(), z.end(), 0.f);
      continue;
    }
    double m = -INFINITY, s = 0;
    for (float v : z) m = std::max(m, double(v));
    for (float v : z) s += std::exp(double(v) - m);
    const double lse = m + std::log(s);
    double l = lambda * (lse - z[gold[t]]);
    for (int64_t k = 0; k < K; ++k) l += (1 - lambda) * tp[t * K + k] * (lse - z[tid[t * K + k]]);
    loss += l / double(n);
    std::vector<double> d(static_cast<size_t>(V));
    for (int64_t v = 0; v < V; ++v) d[v] = std::exp(double(z[v]) - lse);
    d[gold[t]] -= lambda;
    for (int64_t k = 0; k < K; ++k) d[tid[t * K + k]] -= (1 - lambda) * tp[t * K + k];
    for (int64_t v = 0; v < V; ++v) z[v] = float(d[v] / double(n));
  }
  return loss;
}

class LlamaBackward : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaBackward, GradientsEqualAutograd) {
  const fs::path dir = kFixtures / GetParam();
  model::TrainableLlama m = model::TrainableLlama::load(dir.string());
  const SafetensorsFile f((dir / "grads.safetensors").string());
  const auto ref_model = CausalLM::load(dir.string());
  for (const std::string cname : {"clm", "fusion", "mix", "packed", "long"}) {
    SCOPED_TRACE(cname);
    const auto ids = read_i32(f, cname + ".ids"), docs = read_i32(f, cname + ".doc_ids"),
               gold = read_i32(f, cname + ".gold"), tid = read_i32(f, cname + ".target_ids");
    const Tensor tp = read_f32(f, cname + ".target_probs");
    const double lambda = read_f32(f, cname + ".lambda")[0], ref_loss = read_f32(f, cname + ".loss")[0];
    m.zero_grad();
    Tensor logits = m.forward(ids, docs);
    // The training forward equals the inference forward.
    const Tensor inf = ref_model->forward(ids, docs);
    double dl = 0, ml = 0;
    for (int64_t i = 0; i < logits.size(); ++i)
      dl = std::max(dl, double(std::abs(logits[i] - inf[i]))), ml = std::max(ml, double(std::abs(inf[i])));
    // The same ops in the same order save for the saved activations: a few ulps at most.
    EXPECT_LE(dl / ml, 1e-5) << "training forward vs CausalLM::forward";
    const double loss = loss_and_grad(logits, gold, tid, tp.span(), tp.dim(1), lambda);
    // A mean of T log-softmax terms in fp32 (torch) against fp64 sums (ours): ~1e-7 relative.
    EXPECT_NEAR(loss, ref_loss, 1e-5 * std::max(1.0, std::abs(ref_loss)));
    m.backward(logits.span());
    double worst = 0;
    std::string worst_name;
    int checked = 0;
    for (const model::Parameter& p : m.parameters()) {
      const Tensor ref = read_f32(f, cname + ".grad." + p.name);
      ASSERT_EQ(ref.shape(), p.grad.shape()) << p.name;
      double md = 0, mr = 0;
      for (int64_t i = 0; i < ref.size(); ++i) {
        md = std::max(md, double(std::abs(p.grad[i] - ref[i])));
        mr = std::max(mr, double(std::abs(ref[i])));
      }
      ASSERT_GT(mr, 0) << p.name << ": reference gradient is all zero";
      EXPECT_LE(md / mr, kTolerance) << p.name << " max|diff| " << md << " max|ref| " << mr;
      if (md / mr > worst) worst = md / mr, worst_name = p.name;
      ++checked;
    }
    // Every parameter of the fixture was checked (tied: no lm_head).
    int ref_count = 0;
    const std::string prefix = cname + ".grad.";
    for (const auto& [name, info] : f.tensors()) ref_count += name.rfind(prefix, 0) == 0;
    EXPECT_EQ(checked, ref_count);
    std::printf("[ %s/%s ] loss %.6f (ref %.6f), worst grad rel. error %.3g (%s)\n", GetParam().c_str(),
                cname.c_str(), loss, ref_loss, worst, worst_name.c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaBackward, ::testing::Values("llama_gqa", "llama_tied_mqa", "qwen2_bias"));

TEST(LlamaBackwardErrors, BackwardWithoutForward) {
  model::TrainableLlama m = model::TrainableLlama::load((kFixtures / "llama_gqa").string());
  std::vector<float> d(10);
  EXPECT_THROW(m.backward(d), Error);
  const std::vector<int32_t> ids = {1, 2, 3};
  m.forward(ids);
  EXPECT_THROW(m.backward(d), Error);  // wrong size
}

TEST(LlamaBackwardErrors, UntrainableFamily) {
  EXPECT_THROW(model::TrainableLlama::load((fs::path(FUSELLM_SOURCE_DIR) / "tests/fixtures/models/gpt2_tied").string()),
               Error);
}

}  // namespace
}  // namespace fusellm
