// The fp32 CPU backward pass of every trainable family against PyTorch autograd: the fixtures in
// tests/fixtures/grads/ (made by tests/reference/gen_grads.py with torch 2.5.1 and transformers
// 4.46.3) hold tiny checkpoints and the gradient of every parameter for the FuseLLM objective with
// sparse fused targets: CLM only (lambda = 1), fusion only (lambda = 0), their mix (lambda = 0.9),
// and a packed case (three documents, mix), and a long one (160 tokens, two documents: several
// query blocks). One test body, instantiated per family (Cabana's one body per backend):
//   Llama    GQA untied; MQA with tied embeddings; Qwen2 with q/k/v biases
//   GptNeoX  parallel residual, rotary_pct 0.25, exact GELU, biases; sequential, rotary_pct 0.5,
//            tanh GELU, no attention biases
//   Mpt      ALiBi, LayerNorm without bias, no biases, tied; clip_qkv 1.5 with 6 heads, untied
//   Gpt2     learned positions, Conv1D weights, tied, gelu_new, scale by inverse layer
// Gradients are compared in the checkpoint's layout (GPT-2's Conv1D transposed, GPT-NeoX's
// per-head query_key_value: decoder_params.hpp's checkpoint_entries), under their Hugging Face names.
//
// dL/dlogits is computed here by the reference formula (paper eq. 5, what the fused classifier
// kernel computes): for a position with gold >= 0, (softmax(z) - lambda onehot(gold)
// - (1 - lambda) p_fused) / N, N the number of such positions; 0 elsewhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/model.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "grads";
// max |ours - ref| / max |ref|, per parameter. fp32 autograd against fp32 C++: each gradient is a
// GEMM over T positions in another order (and FMA or not, by BLAS kernel), ~1e-6 relative to the
// tensor's largest entry (1.7e-6 seen on the Llama family); 1e-4 is ~60x that, a wrong term is O(1).
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

// An entry for the safetensors writer as a tensor (a view copied, or produced).
Tensor materialize(const SafetensorsEntry& e) {
  Tensor t(e.shape);
  if (e.produce)
    e.produce(t.span());
  else
    std::copy(e.data.begin(), e.data.end(), t.data());
  return t;
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

class Backward : public ::testing::TestWithParam<std::string> {};

TEST_P(Backward, GradientsEqualAutograd) {
  const fs::path dir = kFixtures / GetParam();
  model::TrainableModel m = model::TrainableModel::load(dir.string());
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
    for (const SafetensorsEntry& e :
         model::checkpoint_entries(m.arch(), m.decoder().params(), m.gradient_buffer())) {
      const Tensor ref = read_f32(f, cname + ".grad." + e.name), grad = materialize(e);
      ASSERT_EQ(ref.shape(), grad.shape()) << e.name;
      double md = 0, mr = 0;
      for (int64_t i = 0; i < ref.size(); ++i) {
        md = std::max(md, double(std::abs(grad[i] - ref[i])));
        mr = std::max(mr, double(std::abs(ref[i])));
      }
      ASSERT_GT(mr, 0) << e.name << ": reference gradient is all zero";
      EXPECT_LE(md / mr, kTolerance) << e.name << " max|diff| " << md << " max|ref| " << mr;
      if (md / mr > worst) worst = md / mr, worst_name = e.name;
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

// Activation recomputation (decoder.hpp): the layers that kept only their input run again in the
// backward pass with the same operations in the same order, so the gradients are the bits of
// keeping everything, at every recomputation frequency (all layers; every 2nd; every 3rd, which
// the 2-layer fixtures never reach: nothing recomputed).
TEST_P(Backward, RecomputationGivesTheSameBits) {
  const fs::path dir = kFixtures / GetParam();
  model::TrainableModel m = model::TrainableModel::load(dir.string());
  const SafetensorsFile f((dir / "grads.safetensors").string());
  for (const std::string cname : {"mix", "packed", "long"}) {
    const auto ids = read_i32(f, cname + ".ids"), docs = read_i32(f, cname + ".doc_ids"),
               gold = read_i32(f, cname + ".gold"), tid = read_i32(f, cname + ".target_ids");
    const Tensor tp = read_f32(f, cname + ".target_probs");
    std::vector<std::vector<float>> grads;
    for (const int64_t every : {0, 1, 2, 3}) {
      SCOPED_TRACE(cname + ", recompute_every " + std::to_string(every));
      m.set_recompute_every(every);
      m.zero_grad();
      Tensor logits = m.forward(ids, docs);
      loss_and_grad(logits, gold, tid, tp.span(), tp.dim(1), 0.9);
      m.backward(logits.span());
      grads.emplace_back(m.gradient_buffer().begin(), m.gradient_buffer().end());
      ASSERT_EQ(grads.back().size(), grads.front().size());
      EXPECT_EQ(std::memcmp(grads.back().data(), grads.front().data(), grads.front().size() * sizeof(float)), 0);
    }
  }
  EXPECT_THROW(m.set_recompute_every(-1), Error);
}

// A step's micro-batches: the backward() after the first adds each part's gradient when the part
// is done (Decoder::GradientAdd::kPerPart), which must be the bits of torch's .grad accumulation:
// each micro-batch's gradient computed into zeros, then g = (g_0 + g_1) + g_2, one fp32 add per
// element; with recomputation too (a part's scratch then spans a layer run again).
TEST_P(Backward, MicroBatchesAddAsTorchAccumulates) {
  const fs::path dir = kFixtures / GetParam();
  model::TrainableModel m = model::TrainableModel::load(dir.string());
  const SafetensorsFile f((dir / "grads.safetensors").string());
  const std::vector<std::string> names = {"mix", "packed", "long"};
  auto pass = [&](const std::string& cname) {
    const auto ids = read_i32(f, cname + ".ids"), docs = read_i32(f, cname + ".doc_ids"),
               gold = read_i32(f, cname + ".gold"), tid = read_i32(f, cname + ".target_ids");
    const Tensor tp = read_f32(f, cname + ".target_probs");
    Tensor logits = m.forward(ids, docs);
    loss_and_grad(logits, gold, tid, tp.span(), tp.dim(1), 0.9);
    m.backward(logits.span());
  };
  for (const int64_t every : {0, 1}) {
    SCOPED_TRACE("recompute_every " + std::to_string(every));
    m.set_recompute_every(every);
    std::vector<float> expected;
    for (const std::string& cname : names) {  // each alone, into zeros; summed as torch does
      m.zero_grad();
      pass(cname);
      const std::span<const float> g = m.gradient_buffer();
      if (expected.empty()) expected.assign(g.begin(), g.end());
      else
        for (size_t i = 0; i < g.size(); ++i) expected[i] = expected[i] + g[i];
    }
    m.zero_grad();
    for (const std::string& cname : names) pass(cname);
    ASSERT_EQ(m.gradient_buffer().size(), expected.size());
    EXPECT_EQ(std::memcmp(m.gradient_buffer().data(), expected.data(), expected.size() * sizeof(float)), 0);
  }
}

// The parts kPerPart differentiates apart tile the parameter buffer: no gaps, no overlaps, so its
// scratch is one part's size (what `fusellm plan` counts) and every gradient lands in one part.
TEST_P(Backward, GradientPartsTileTheBuffer) {
  const model::TrainableModel m = model::TrainableModel::load((kFixtures / GetParam()).string());
  const model::DecoderRegions& R = m.decoder().regions();
  std::vector<model::GradientPart> parts = {model::embedding_part(R), model::head_part(R)};
  for (int64_t l = 0; l < m.arch().layers; ++l) parts.push_back(model::layer_part(R, l));
  std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  int64_t at = 0;
  for (const auto& p : parts) {
    EXPECT_EQ(p.begin, at) << "a gap or an overlap before the part [" << p.begin << ", " << p.end << ")";
    EXPECT_GT(p.size(), 0);
    at = p.end;
  }
  EXPECT_EQ(at, m.num_parameters());
}

INSTANTIATE_TEST_SUITE_P(Llama, Backward, ::testing::Values("llama_gqa", "llama_tied_mqa", "qwen2_bias"));
INSTANTIATE_TEST_SUITE_P(GptNeoX, Backward, ::testing::Values("neox_parallel", "neox_sequential"));
INSTANTIATE_TEST_SUITE_P(Mpt, Backward, ::testing::Values("mpt_alibi", "mpt_clip"));
INSTANTIATE_TEST_SUITE_P(Gpt2, Backward, ::testing::Values("gpt2_tied"));

TEST(BackwardErrors, BackwardWithoutForward) {
  model::TrainableModel m = model::TrainableModel::load((kFixtures / "llama_gqa").string());
  std::vector<float> d(10);
  EXPECT_THROW(m.backward(d), Error);
  const std::vector<int32_t> ids = {1, 2, 3};
  m.forward(ids);
  EXPECT_THROW(m.backward(d), Error);  // wrong size
}

// What has no backward pass is refused by name: a gated MLP with another activation than SiLU.
TEST(BackwardErrors, UntrainableSettingNamed) {
  const fs::path dir = fs::path(::testing::TempDir()) / "untrainable_gelu_llama";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(kFixtures / "llama_gqa" / "model.safetensors", dir / "model.safetensors");
  nlohmann::json c = read_json_file((kFixtures / "llama_gqa" / "config.json").string());
  c["hidden_act"] = "gelu";
  std::ofstream(dir / "config.json") << c.dump(2);
  try {
    model::TrainableModel::load(dir.string());
    ADD_FAILURE() << "a gated GELU MLP was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_act"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("silu"), std::string::npos) << e.what();
  }
  // Its forward pass runs: only training is refused.
  EXPECT_NO_THROW(CausalLM::load(dir.string()));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fusellm
