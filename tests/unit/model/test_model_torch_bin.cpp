// The forward pass on the torch zip fixtures (tests/fixtures/torch_bin, gen_torch_bin.py): each
// tiny model saved by transformers as pytorch_model.bin (single and sharded) gives logits equal,
// bit for bit, to the same weights read from safetensors, and those are transformers' within the
// tolerance of test_model_reference.cpp, in fp32, fp16 and bf16. The fixtures: a generic tiny
// Llama, and Llama-2 7B, OpenLLaMA 7B v2, MPT 7B (MosaicML's config layout) and Pythia with their
// published config.json (only the sizes tiny), whose .bin files also hold the buffers older
// transformers saved (inv_freq, GPT-NeoX's causal mask), which the loader skips.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/model.hpp"
#include "unit/model/model_inputs.hpp"
#include "unit/model/reference_cases.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;

const fs::path kDir = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "torch_bin";
constexpr double kTolerance = 1e-4;  // as test_model_reference.cpp, which says why

class TorchBinForward : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchBinForward, LogitsEqualSafetensorsAndTransformers) {
  const fs::path base = kDir / GetParam();
  const auto ref = CausalLM::load((base / "safetensors").string());
  const auto cases = testing::read_cases(base / "reference" / "cases.safetensors");
  ASSERT_EQ(cases.size(), 2u);
  const bool legacy_buffers = GetParam().starts_with("open_llama") || GetParam().starts_with("pythia");
  for (const char* layout : {"bin", "bin_sharded"}) {
    const auto lm = CausalLM::load((base / layout).string());
    // A tied head saved as a view of the embedding counts once (MPT ties it), as transformers'
    // num_parameters counts it; buffers of older transformers are elements, not parameters.
    EXPECT_EQ(lm->info().num_parameters, ref->info().num_parameters) << GetParam() << " " << layout;
    if (!legacy_buffers)
      EXPECT_EQ(Checkpoint((base / layout).string()).num_parameters(),
                Checkpoint((base / "safetensors").string()).num_parameters())
          << GetParam() << " " << layout;
    for (const testing::Case& c : cases) {
      const Tensor want = ref->forward(c.ids), got = lm->forward(c.ids);
      EXPECT_TRUE(testing::bit_equal(got, want)) << GetParam() << " " << layout << " " << c.name;
      const double err = testing::relative_error(got, c.logits);
      EXPECT_LE(err, kTolerance) << GetParam() << " " << layout << " " << c.name;
      std::printf("  %-22s %-12s %-5s bit-equal to safetensors, max|diff|/max|ref| vs transformers = %.2e\n",
                  GetParam().c_str(), layout, c.name.c_str(), err);
    }
  }
}

std::vector<std::string> fixtures() {
  std::vector<std::string> out;
  for (const char* family : {"llama", "llama2_7b", "open_llama_7b_v2", "mpt_7b", "pythia"})
    for (const char* dtype : {"f32", "f16", "bf16"}) out.push_back(std::string(family) + "_" + dtype);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TorchBinForward, ::testing::ValuesIn(fixtures()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// MosaicML's logit_scale ("inv_sqrt_d_model": 1 / sqrt(d_model)) multiplies the logits
// (MPTForCausalLM.forward); the reference is transformers' logits times that factor.
TEST(TorchBinForward, MptLogitScaleMultipliesTheLogits) {
  const fs::path base = kDir / "mpt_7b_logit_scale";
  const auto lm = CausalLM::load((base / "safetensors").string());
  const auto unscaled = CausalLM::load((kDir / "mpt_7b_f32" / "safetensors").string());
  for (const testing::Case& c : testing::read_cases(base / "reference" / "cases.safetensors")) {
    const Tensor got = lm->forward(c.ids);
    EXPECT_LE(testing::relative_error(got, c.logits), kTolerance) << c.name;
    EXPECT_GT(testing::relative_error(unscaled->forward(c.ids), c.logits), 0.5) << c.name;
  }
}

}  // namespace
}  // namespace fusellm
