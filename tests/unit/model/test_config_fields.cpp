// Every field of a config.json is either read by its family's parser or listed as irrelevant to
// the forward pass (model/arch.hpp: unknown_fields): the published configs of Llama-2 7B,
// OpenLLaMA 7B v2, MPT 7B (MosaicML's layout) and Pythia (tests/fixtures/torch_bin, written by
// gen_torch_bin.py) and every transformers-written fixture have no unknown field, and a field
// nobody knows is reported (then logged as a warning when the model loads).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fusellm/model/decoder.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
const fs::path kSource = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures";

using Fields = std::vector<std::string>;

TEST(ConfigFields, PublishedConfigsHaveNoUnknownField) {
  for (const char* m : {"llama2_7b_f32", "open_llama_7b_v2_f32", "mpt_7b_f32", "pythia_f32", "mpt_7b_logit_scale"}) {
    const fs::path dir = kSource / "torch_bin" / m / "safetensors";
    EXPECT_EQ(model::read_arch(dir.string()).unknown_fields, Fields{}) << m;
  }
}

TEST(ConfigFields, TransformersWrittenConfigsHaveNoUnknownField) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(kSource / "models")) {
    EXPECT_EQ(model::read_arch(e.path().string()).unknown_fields, Fields{}) << e.path();
    ++n;
  }
  EXPECT_GE(n, 10);
}

TEST(ConfigFields, AFieldNobodyKnowsIsReported) {
  const fs::path dir = fs::temp_directory_path() / ("fusellm_config_fields_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  nlohmann::json j;
  std::ifstream(kSource / "torch_bin" / "mpt_7b_f32" / "safetensors" / "config.json") >> j;
  j["rotary_magic"] = 3;
  j["attn_config"]["qk_rescale"] = true;
  j["ffn_config"] = {{"ffn_type", "mptmlp"}, {"gate_bias", 1}};
  std::ofstream(dir / "config.json") << j.dump();
  const Fields got = model::read_arch(dir.string()).unknown_fields;
  fs::remove_all(dir);
  EXPECT_EQ(got, (Fields{"rotary_magic", "attn_config.qk_rescale", "ffn_config.gate_bias"}));
}

}  // namespace
}  // namespace fusellm
