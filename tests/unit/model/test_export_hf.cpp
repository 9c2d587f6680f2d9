// Export to a Hugging Face checkpoint: a trainable model's parameters written by export_hf load
// back through CausalLM::load with the same logits (F32: bit for bit; BF16: those of the model
// rounded to bf16), sharding writes an index that the loader follows, config.json gets the
// written torch_dtype and the tokenizer files are copied.
//
// With FUSELLM_EXPORT_DIR set, the exported directories stay there, each with
// fusellm_logits.safetensors (ids and fusellm's logits) for tests/reference/check_export.py,
// which loads them with transformers and compares.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/export_hf.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/model/model.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
const fs::path kSource = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures";

std::vector<SafetensorsEntry> entries(const model::TrainableModel& m) {
  std::vector<SafetensorsEntry> e;
  for (const model::Parameter& p : m.parameters()) e.push_back({p.name, p.value.shape(), p.value.span()});
  return e;
}

fs::path out_dir(const std::string& name) {
  const char* keep = std::getenv("FUSELLM_EXPORT_DIR");
  const fs::path d = keep ? fs::path(keep) / name
                          : fs::temp_directory_path() / ("fusellm_export_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  return d;
}

void cleanup(const fs::path& d) {
  if (!std::getenv("FUSELLM_EXPORT_DIR")) fs::remove_all(d);
}

std::vector<int32_t> some_ids(int64_t vocab, int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(int32_t((i * 37 + 11) % vocab));
  return ids;
}

// Keeps fusellm's logits beside the export for check_export.py (ids stored as F32: small ints).
void save_logits(const fs::path& d, const std::vector<int32_t>& ids, const Tensor& logits) {
  const std::vector<float> fids(ids.begin(), ids.end());
  write_safetensors((d / "fusellm_logits.safetensors").string(),
                    std::vector<SafetensorsEntry>{{"ids", {int64_t(ids.size())}, fids},
                                                  {"logits", logits.shape(), logits.span()}});
}

struct ExportCase {
  std::string model;
  DType dtype;
  int64_t max_shard_bytes;
};

class ExportHF : public ::testing::TestWithParam<ExportCase> {};

TEST_P(ExportHF, LoadsWithTheSameLogits) {
  const ExportCase& c = GetParam();
  const fs::path src = kSource / "grads" / c.model;
  model::TrainableModel m = model::TrainableModel::load(src.string());
  const std::string name = c.model + (c.dtype == DType::BF16 ? "_bf16" : "_f32") + (c.max_shard_bytes < 1e9 ? "_sharded" : "");
  const fs::path out = out_dir(name);
  // Tokenizer: the SentencePiece-style fixture (its vocabulary differs from the tiny model's:
  // only loading and copying are checked).
  ExportOptions opt;
  opt.dtype = c.dtype;
  opt.max_shard_bytes = c.max_shard_bytes;
  auto params = entries(m);
  if (c.dtype == DType::BF16)  // what the exported model holds
    for (model::Parameter& p : m.parameters())
      for (float& v : p.value.span()) v = bf16_to_f32(f32_to_bf16(v));
  const ExportResult r = export_hf(params, src.string(), (kSource / "tokenizers" / "spm_model").string(), out.string(), opt);
  EXPECT_TRUE(fs::exists(out / "config.json"));
  EXPECT_TRUE(fs::exists(out / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(out / "tokenizer.model"));
  EXPECT_TRUE(fs::exists(out / "generation_config.json"));
  EXPECT_EQ(fs::exists(out / "model.safetensors.index.json"), c.max_shard_bytes < 1e9);
  EXPECT_EQ(fs::exists(out / "model.safetensors"), c.max_shard_bytes >= 1e9);
  EXPECT_EQ(HFConfig::load(out.string()).get_string("torch_dtype"), c.dtype == DType::BF16 ? "bfloat16" : "float32");

  const Checkpoint ck(out.string());
  for (const model::Parameter& p : m.parameters()) {
    const Tensor t = ck.load_f32(p.name, p.value.shape());
    EXPECT_EQ(std::memcmp(t.data(), p.value.data(), size_t(t.size()) * 4), 0) << p.name;
  }
  EXPECT_EQ(ck.names().size(), m.parameters().size());

  const auto ids = some_ids(m.arch().vocab, 40);
  const Tensor want = m.forward(ids);
  const auto loaded = CausalLM::load(out.string());
  const Tensor got = loaded->forward(ids);
  double md = 0, mr = 0;
  for (int64_t i = 0; i < want.size(); ++i)
    md = std::max(md, double(std::abs(got[i] - want[i]))), mr = std::max(mr, double(std::abs(want[i])));
  // The exported F32 weights are bit-equal (memcmp above) and the same code runs: ulps at most.
  EXPECT_LE(md / mr, 1e-5);
  save_logits(out, ids, got);
  cleanup(out);
}

INSTANTIATE_TEST_SUITE_P(Models, ExportHF,
                         ::testing::Values(ExportCase{"llama_gqa", DType::F32, 5'000'000'000},
                                           ExportCase{"llama_tied_mqa", DType::F32, 5'000'000'000},
                                           ExportCase{"qwen2_bias", DType::BF16, 5'000'000'000},
                                           ExportCase{"llama_gqa", DType::F32, 20'000}),
                         [](const auto& info) {
                           return info.param.model + (info.param.dtype == DType::BF16 ? "_bf16" : "_f32") +
                                  (info.param.max_shard_bytes < 1e9 ? "_sharded" : "");
                         });

TEST(ExportHF, ReexportRemovesStaleShards) {
  const fs::path src = kSource / "grads" / "llama_gqa";
  model::TrainableModel m = model::TrainableModel::load(src.string());
  const fs::path out = out_dir("reexport");
  ExportOptions opt;
  opt.max_shard_bytes = 20'000;
  export_hf(entries(m), src.string(), src.string(), out.string(), opt);
  EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
  opt.max_shard_bytes = 5'000'000'000;
  export_hf(entries(m), src.string(), src.string(), out.string(), opt);
  int model_files = 0;
  for (const auto& e : fs::directory_iterator(out)) model_files += e.path().filename().string().rfind("model", 0) == 0;
  EXPECT_EQ(model_files, 1);
  EXPECT_NO_THROW(CausalLM::load(out.string()));
  fs::remove_all(out);
}

}  // namespace
}  // namespace fusellm
