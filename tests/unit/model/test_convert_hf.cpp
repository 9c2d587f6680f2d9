// `fusellm convert` (model/convert_hf.hpp): each published-structure fixture of
// tests/fixtures/torch_bin (Llama-2, OpenLLaMA, MPT, Pythia; gen_torch_bin.py), read from its
// sharded .bin, written as safetensors, loads back with logits bit-equal to the .bin's; the
// stored dtype is kept (or converted on request), tied heads and unused buffers are not written,
// sharding writes an index the loader follows, config / generation config / tokenizer files are
// copied, and a non-empty output directory is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/convert_hf.hpp"
#include "fusellm/model/model.hpp"
#include "unit/model/model_inputs.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
const fs::path kBin = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "torch_bin";

// A fresh path under /tmp (not created), removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() / ("fusellm_convert_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

const std::vector<int32_t> kIds = {3, 17, 0, 31, 8, 8, 22};

void expect_same_logits(const std::string& a, const std::string& b) {
  const Tensor x = CausalLM::load(a)->forward(kIds), y = CausalLM::load(b)->forward(kIds);
  EXPECT_TRUE(testing::bit_equal(x, y)) << a << " vs " << b;
}

class ConvertFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvertFixture, KeepsDtypeAndLogits) {
  const fs::path src = kBin / GetParam() / "bin_sharded";
  TempDir out(GetParam());
  convert_hf(src.string(), out.str());
  const Checkpoint in(src.string()), got(out.str());
  EXPECT_EQ(got.format(), "safetensors");
  EXPECT_EQ(got.shard_files(), std::vector<std::string>{"model.safetensors"});
  // What transformers' save_pretrained writes: the safetensors fixture's tensors, no more.
  const Checkpoint want((kBin / GetParam() / "safetensors").string());
  EXPECT_EQ(got.names(), want.names());
  EXPECT_EQ(got.dtype_counts(), want.dtype_counts());
  for (const std::string& n : want.names()) {
    const TensorInfo &a = got.info(n), &b = want.info(n);
    ASSERT_EQ(a.shape, b.shape) << n;
    EXPECT_TRUE(std::equal(a.bytes.begin(), a.bytes.end(), b.bytes.begin(), b.bytes.end())) << n;
  }
  EXPECT_EQ(got.num_parameters(), CausalLM::load(src.string())->info().num_parameters);
  expect_same_logits(src.string(), out.str());
  // config.json as it was but for torch_dtype (the fixture's already names its dtype); the
  // generation config copied byte for byte.
  EXPECT_EQ(read_json_file((out.path() / "config.json").string()), read_json_file((src / "config.json").string()));
  EXPECT_EQ(read_text_file((out.path() / "generation_config.json").string()),
            read_text_file((src / "generation_config.json").string()));
}

std::vector<std::string> fixtures() {
  std::vector<std::string> out;
  for (const char* family : {"llama2_7b", "open_llama_7b_v2", "mpt_7b", "pythia"})
    for (const char* dtype : {"f32", "bf16"}) out.push_back(std::string(family) + "_" + dtype);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertFixture, ::testing::ValuesIn(fixtures()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// MPT ties its head: transformers' .bin holds lm_head.weight as a view of the embedding, and the
// conversion writes it once, as save_pretrained does.
TEST(Convert, TiedHeadIsWrittenOnce) {
  const fs::path src = kBin / "mpt_7b_f16" / "bin";
  ASSERT_TRUE(Checkpoint(src.string()).has("lm_head.weight"));
  TempDir out("tied");
  convert_hf(src.string(), out.str());
  const Checkpoint got(out.str());
  EXPECT_FALSE(got.has("lm_head.weight"));
  EXPECT_TRUE(got.has("transformer.wte.weight"));
  expect_same_logits(src.string(), out.str());
}

TEST(Convert, ShardsWithAnIndexAndConvertsTheDtype) {
  const fs::path src = kBin / "pythia_bf16" / "bin";
  TempDir out("sharded");
  ConvertOptions opt;
  opt.dtype = DType::F32;
  opt.max_shard_bytes = 4096;
  const ExportResult r = convert_hf(src.string(), out.str(), opt);
  const Checkpoint got(out.str());
  EXPECT_GT(got.shard_files().size(), 2u);
  EXPECT_TRUE(fs::exists(out.path() / "model.safetensors.index.json"));
  EXPECT_EQ(got.dtype_counts().size(), 1u);
  EXPECT_TRUE(got.dtype_counts().count("F32"));
  EXPECT_EQ(HFConfig::load(out.str()).get_string("torch_dtype"), "float32");
  expect_same_logits(src.string(), out.str());  // bf16 -> f32 is exact
  EXPECT_GT(r.tensor_bytes, 0);
}

TEST(Convert, CopiesTheTokenizerFiles) {
  TempDir src("with_tokenizer"), out("with_tokenizer_out");
  fs::create_directories(src.path());
  for (const auto& e : fs::directory_iterator(kBin / "llama2_7b_f16" / "bin")) fs::copy_file(e.path(), src.path() / e.path().filename());
  std::ofstream(src.path() / "tokenizer.json") << "{\"not\": \"parsed by convert\"}";
  std::ofstream(src.path() / "tokenizer_config.json") << "{}";
  convert_hf(src.str(), out.str());
  EXPECT_EQ(read_text_file((out.path() / "tokenizer.json").string()), "{\"not\": \"parsed by convert\"}");
  EXPECT_TRUE(fs::exists(out.path() / "tokenizer_config.json"));
  EXPECT_FALSE(fs::exists(out.path() / "pytorch_model.bin"));
}

TEST(Convert, RefusesANonEmptyOutput) {
  TempDir out("nonempty");
  fs::create_directories(out.path());
  std::ofstream(out.path() / "model.safetensors") << "precious";
  try {
    convert_hf((kBin / "llama2_7b_f32" / "bin").string(), out.str());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(out.str()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not an empty directory"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_text_file((out.path() / "model.safetensors").string()), "precious");
  // An empty directory is fine.
  TempDir empty("empty");
  fs::create_directories(empty.path());
  EXPECT_NO_THROW(convert_hf((kBin / "llama2_7b_f32" / "bin").string(), empty.str()));
}

}  // namespace
}  // namespace fusellm
