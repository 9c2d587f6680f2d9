// eval/special_tokens: what transformers' AutoTokenizer gives the demo checkpoints (checked with
// transformers 4.46.3: LlamaTokenizerFast bos <s>=1, eos </s>=2; GPTNeoXTokenizerFast bos = eos =
// <|endoftext|>=0), the stop ids generate() uses (generation_config.json), and the overrides of
// tokenizer_config.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "error_of.hpp"
#include "fusellm/eval/special_tokens.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {
const fs::path kDemo = fs::path(FUSELLM_SOURCE_DIR) / "examples" / "demo";
}

TEST(SpecialTokens, AsAutoTokenizerGivesTheDemoModels) {
  const auto llama_tok = Tokenizer::load((kDemo / "llama").string());
  const auto llama = eval::special_tokens((kDemo / "llama").string(), *llama_tok);
  EXPECT_EQ(llama.bos, 1);
  EXPECT_EQ(llama.eos, 2);
  EXPECT_EQ(llama.prefix(), 1);  // HFLM.prefix_token_id: the BOS first
  EXPECT_EQ(llama.eos_text, "</s>");
  EXPECT_EQ(llama.stop_ids, (std::vector<int32_t>{2}));
  const auto neox_tok = Tokenizer::load((kDemo / "neox").string());
  const auto neox = eval::special_tokens((kDemo / "neox").string(), *neox_tok);
  EXPECT_EQ(neox.bos, 0);
  EXPECT_EQ(neox.eos, 0);
  EXPECT_EQ(neox.eos_text, "<|endoftext|>");
  EXPECT_EQ(neox.stop_ids, (std::vector<int32_t>{2}));  // generation_config.json's, not the tokenizer's
}

TEST(SpecialTokens, TokenizerConfigOverridesAndNullMeansNone) {
  const fs::path dir = fs::temp_directory_path() / ("fusellm_special_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(kDemo / "llama" / "tokenizer.json", dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  fs::copy_file(kDemo / "llama" / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": null, "eos_token": {"content": "<unk>"}})";
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [2, 0]})";
  const auto tok = Tokenizer::load(dir.string());
  const auto s = eval::special_tokens(dir.string(), *tok);
  EXPECT_FALSE(s.bos.has_value());
  EXPECT_EQ(s.eos, 0);
  EXPECT_EQ(s.prefix(), 0);  // no BOS: the EOS
  EXPECT_EQ(s.stop_ids, (std::vector<int32_t>{2, 0}));
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": null, "eos_token": null})";
  const auto none = eval::special_tokens(dir.string(), *tok);
  EXPECT_NE(fusellm::testing::error_of([&] { none.prefix(); }).find("neither a BOS nor an EOS"), std::string::npos);
  fs::remove_all(dir);
}
