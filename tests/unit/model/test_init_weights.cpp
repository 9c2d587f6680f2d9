// Fresh weights (model/init_weights.hpp): transformers' _init_weights rules per family, the same
// model for the same seed, and a checkpoint that the loader reads back as written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/model/export_hf.hpp"
#include "fusellm/model/init_weights.hpp"

namespace fusellm::model {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "models";

struct Stats {
  double mean = 0, std = 0;
};
Stats stats(std::span<const float> v) {
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += double(x) * x;
  const double m = s / double(v.size());
  return {m, std::sqrt(s2 / double(v.size()) - m * m)};
}

class InitWeights : public ::testing::TestWithParam<std::string> {};

// Every tensor follows its rule: norms 1, biases 0, matrices Normal(0, std) (GPT-2's c_proj scaled).
TEST_P(InitWeights, FollowsTransformersRules) {
  const Arch a = read_arch((kFixtures / GetParam()).string());
  const DecoderParams p = plan_decoder_params(a, base_prefix(a));
  const std::vector<float> flat = init_parameters(a, p, 0.02, 7);
  for (int i = 0; i < p.table.size(); ++i) {
    const ParamEntry& e = p.table[i];
    const std::span<const float> v(flat.data() + e.offset, size_t(e.size));
    const Stats s = stats(v);
    const bool norm = e.name.find("norm") != std::string::npos || e.name.find("ln_") != std::string::npos ||
                      e.name.find("layernorm") != std::string::npos;
    SCOPED_TRACE(e.name);
    if (e.name.ends_with(".bias")) {
      EXPECT_EQ(s.mean, 0.0);
      EXPECT_EQ(s.std, 0.0);
    } else if (norm) {
      EXPECT_EQ(s.mean, 1.0);
      EXPECT_EQ(s.std, 0.0);
    } else {
      const double want = a.conv1d && e.name.find("c_proj") != std::string::npos ? 0.02 / std::sqrt(2.0 * a.layers) : 0.02;
      EXPECT_NEAR(s.mean, 0.0, 6 * want / std::sqrt(double(e.size)));
      EXPECT_NEAR(s.std, want, 0.1 * want) << e.size << " values";
    }
  }
}

// The same seed gives the same bits; another seed other weights.
TEST_P(InitWeights, SeedDecides) {
  const Arch a = read_arch((kFixtures / GetParam()).string());
  const DecoderParams p = plan_decoder_params(a, base_prefix(a));
  EXPECT_EQ(init_parameters(a, p, 0.02, 1), init_parameters(a, p, 0.02, 1));
  EXPECT_NE(init_parameters(a, p, 0.02, 1), init_parameters(a, p, 0.02, 2));
}

// Written as a checkpoint, the weights load back with every tensor in place and shaped as stored
// (GPT-2's Conv1D weights [in, out]); the model runs.
TEST_P(InitWeights, CheckpointLoadsBack) {
  const fs::path src = kFixtures / GetParam();
  const fs::path out = fs::temp_directory_path() / ("fusellm_init_" + std::to_string(::getpid()) + "_" + GetParam());
  fs::remove_all(out);
  const Arch a = read_arch(src.string());
  const DecoderParams p = plan_decoder_params(a, base_prefix(a));
  const std::vector<float> flat = init_parameters(a, p, 0.02, 3);
  export_hf(fresh_checkpoint_entries(a, p, flat), src.string(), src.string(), out.string());
  const auto model = load_decoder(out.string());
  if (!a.conv1d && a.qkv_layout != QkvLayout::FusedPerHead) {
    const std::span<const float> back = model->parameters();
    EXPECT_TRUE(std::equal(back.begin(), back.end(), flat.begin()));
  }
  EXPECT_EQ(model->parameter_table().total(), p.table.total());
  const std::vector<int32_t> ids = {1, 2, 3, 4};
  const Tensor logits = model->forward(ids);
  for (float x : logits.span()) ASSERT_TRUE(std::isfinite(x));
  fs::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(Families, InitWeights,
                         ::testing::Values("llama_gqa", "qwen2_dynamic_sharded", "mpt_alibi", "neox_parallel", "gpt2_tied"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace fusellm::model
