// The forward pass on the torch zip fixtures (tests/fixtures/torch_bin, gen_torch_bin.py): the
// tiny Llama saved by transformers as pytorch_model.bin (single and sharded) gives logits equal,
// bit for bit, to the same weights read from safetensors, and those are transformers' within the
// tolerance of test_model_reference.cpp, in fp32, fp16 and bf16.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

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
  const fs::path base = kDir / ("llama_" + GetParam());
  const auto ref = CausalLM::load((base / "safetensors").string());
  const auto cases = testing::read_cases(base / "reference" / "cases.safetensors");
  ASSERT_EQ(cases.size(), 2u);
  for (const char* layout : {"bin", "bin_sharded"}) {
    const auto lm = CausalLM::load((base / layout).string());
    for (const testing::Case& c : cases) {
      const Tensor want = ref->forward(c.ids), got = lm->forward(c.ids);
      EXPECT_TRUE(testing::bit_equal(got, want)) << GetParam() << " " << layout << " " << c.name;
      const double err = testing::relative_error(got, c.logits);
      EXPECT_LE(err, kTolerance) << GetParam() << " " << layout << " " << c.name;
      std::printf("  llama_%-5s %-12s %-5s bit-equal to safetensors, max|diff|/max|ref| vs transformers = %.2e\n",
                  GetParam().c_str(), layout, c.name.c_str(), err);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TorchBinForward, ::testing::Values("f32", "f16", "bf16"));

}  // namespace
}  // namespace fusellm
