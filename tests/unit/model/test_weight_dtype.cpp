// [train].dtype = "bf16" (Decoder::set_weight_dtype): the passes read the fp32 master weights
// rounded to bfloat16, and the master stays fp32. The outside reference is torch's own rounding:
// tests/reference/gen_torch_bin.py writes each tiny model twice, as float32 and as
// `.to(torch.bfloat16)` of the same weights (tests/fixtures/torch_bin/<name>_{f32,bf16}); the f32
// model with bf16 weights must compute exactly what the bf16 checkpoint computes in fp32, bit for
// bit, forward and backward, for the four families published in those folders.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "fusellm/core/dtype.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/model/trainable_model.hpp"

namespace fusellm {
namespace {

const std::string kDir = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/torch_bin/";

class WeightDtype : public ::testing::TestWithParam<std::string> {};

struct Pass {
  Tensor logits;
  std::vector<float> grads;
};

// A forward and a backward pass over two packed documents of seeded random tokens, with a
// seeded random dL/dlogits.
Pass run(model::TrainableModel& m) {
  const int64_t T = 40, V = m.arch().vocab;
  std::mt19937 rng(11);
  std::vector<int32_t> ids(static_cast<size_t>(T)), docs(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) ids[size_t(t)] = int32_t(rng() % uint32_t(V)), docs[size_t(t)] = t < 15 ? 0 : 1;
  std::normal_distribution<float> nd(0.f, 1e-2f);
  std::vector<float> dz(static_cast<size_t>(T * V));
  for (float& x : dz) x = nd(rng);
  m.zero_grad();
  Pass p{m.forward(ids, docs), {}};
  m.backward(dz);
  p.grads.assign(m.gradient_buffer().begin(), m.gradient_buffer().end());
  return p;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

TEST_P(WeightDtype, Bf16WeightsComputeWhatTorchsBf16CheckpointComputes) {
  model::TrainableModel f32 = model::TrainableModel::load(kDir + GetParam() + "_f32/safetensors");
  model::TrainableModel bf16 = model::TrainableModel::load(kDir + GetParam() + "_bf16/safetensors");
  const std::vector<float> master(f32.parameter_buffer().begin(), f32.parameter_buffer().end());
  const Pass plain = run(f32);
  f32.set_weight_dtype(DType::BF16);
  const Pass rounded = run(f32), reference = run(bf16);
  EXPECT_TRUE(same_bits(rounded.logits.span(), reference.logits.span())) << "logits";
  EXPECT_TRUE(same_bits(rounded.grads, reference.grads)) << "gradients";
  EXPECT_FALSE(same_bits(plain.logits.span(), reference.logits.span())) << "the fp32 pass already equals bf16's";
  // The master is untouched: still the fp32 values, most of which bf16 cannot hold.
  EXPECT_TRUE(same_bits(f32.parameter_buffer(), master));
  int64_t not_bf16 = 0;
  for (float w : master) not_bf16 += bf16_to_f32(f32_to_bf16(w)) != w;
  EXPECT_GT(not_bf16, int64_t(master.size()) / 2);
  // Back to fp32: the first pass's bits again.
  f32.set_weight_dtype(DType::F32);
  EXPECT_TRUE(same_bits(run(f32).logits.span(), plain.logits.span()));
}

// A teacher ([[source]].dtype = "bf16") rounds its parameters in place (Decoder::round_parameters_to):
// its forward pass is the bf16 checkpoint's, bit for bit, with no second copy.
TEST_P(WeightDtype, ParametersRoundedInPlaceComputeWhatTorchsBf16CheckpointComputes) {
  const auto f32 = model::load_decoder(kDir + GetParam() + "_f32/safetensors");
  const auto bf16 = model::load_decoder(kDir + GetParam() + "_bf16/safetensors");
  const std::vector<int32_t> ids{3, 17, 5, 9, 1, 30, 2, 11, 8, 4};
  const Tensor plain = f32->forward(ids);
  f32->round_parameters_to(DType::BF16);
  EXPECT_EQ(f32->weight_dtype(), DType::F32);  // no copy: the parameters themselves hold bf16 values
  for (float w : f32->parameters()) ASSERT_EQ(bf16_to_f32(f32_to_bf16(w)), w);
  EXPECT_TRUE(same_bits(f32->forward(ids).span(), bf16->forward(ids).span()));
  EXPECT_FALSE(same_bits(plain.span(), bf16->forward(ids).span()));
}

INSTANTIATE_TEST_SUITE_P(TorchBin, WeightDtype, ::testing::Values("llama", "llama2_7b", "open_llama_7b_v2", "pythia"));

// The bf16 copy is made again when the master was written and the writer said so
// (TrainableModel::parameters_changed, which the trainer calls after each update and a resume).
TEST(WeightDtype, TheCopyFollowsTheMasterAfterParametersChanged) {
  model::TrainableModel m = model::TrainableModel::load(kDir + "llama_f32/safetensors");
  m.set_weight_dtype(DType::BF16);
  const Pass before = run(m);
  for (float& w : m.parameter_buffer()) w *= 1.5f;
  EXPECT_TRUE(same_bits(run(m).logits.span(), before.logits.span())) << "the copy changed without being told";
  m.parameters_changed();
  const Pass after = run(m);
  EXPECT_FALSE(same_bits(after.logits.span(), before.logits.span()));
  m.set_weight_dtype(DType::F32);  // fp32 on the CPU: the passes read the master itself
  EXPECT_FALSE(same_bits(run(m).logits.span(), after.logits.span()));
}

TEST(WeightDtypeErrors, OnlyFp32AndBf16) {
  model::TrainableModel m = model::TrainableModel::load(kDir + "llama_f32/safetensors");
  EXPECT_NE(testing::error_of([&] { m.set_weight_dtype(DType::F16); }).find("not supported"), std::string::npos);
  const auto d = model::load_decoder(kDir + "llama_f32/safetensors");
  EXPECT_NE(testing::error_of([&] { d->round_parameters_to(DType::F16); }).find("fp32 or bf16, not F16"),
            std::string::npos);
}

}  // namespace
}  // namespace fusellm
