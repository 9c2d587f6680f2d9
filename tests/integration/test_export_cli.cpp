// `fusellm export`: a training checkpoint (TrainCheckpointStore, HDF5) of a tiny Llama becomes a Hugging
// Face checkpoint directory: the tensors by name, bit for bit (f32) or bf16-rounded, the target's
// config.json (torch_dtype set) and tokenizer files beside them, from a step directory or from the
// checkpoint directory's `latest`; errors name what is missing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <iterator>
#include <map>
#include <set>

#include "fusellm/train/train_checkpoint.hpp"
#include "run_fusellm.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/core/dtype.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures";

// name -> (dtype, shape, bytes) of an exported file, through the project's safetensors reader.
struct StTensor {
  std::string dtype;
  Shape shape;
  std::string bytes;
};
std::map<std::string, StTensor> read_st(const fs::path& p) {
  const SafetensorsFile f(p.string());
  std::map<std::string, StTensor> out;
  for (const auto& [name, t] : f.tensors())
    out[name] = {std::string(dtype_name(t.dtype)), t.shape,
                 std::string(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size())};
  return out;
}

// Fixture tensors as fp32 (they are stored F32).
std::vector<NamedTensor> read_f32(const fs::path& p) {
  std::vector<NamedTensor> v;
  for (auto& [name, t] : read_st(p)) {
    if (t.dtype != "F32") throw Error(name + ": expected F32");
    Tensor x(t.shape);
    std::memcpy(x.data(), t.bytes.data(), t.bytes.size());
    v.push_back({name, std::move(x)});
  }
  return v;
}

using CliRun = fusellm::testing::CmdResult;
CliRun run(const std::string& args) { return fusellm::testing::run_fusellm(args); }

class ExportCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fusellm_export_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_ = (kFixtures / "grads" / "llama_gqa").string();
    tensors_ = read_f32(fs::path(model_) / "model.safetensors");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Saves the fixture's tensors as step `step` of a checkpoint dir, with a job naming the target.
  std::string save(int64_t step, const std::string& target_line) {
    CheckpointContents c;
    for (const NamedTensor& t : tensors_) c.model.push_back({t.name, t.tensor.shape(), t.tensor.span()});
    c.state.step = step;
    c.state.optim_steps = step;
    c.state.job_toml = target_line + "\ntokenizer = \"" + (kFixtures / "tokenizers" / "spm_model").string() +
                       "\"\n[corpus]\npath = \"/nonexistent/corpus.jsonl\"\n[distill]\nfusion = \"none\"\nlambda = 1.0\n";
    return TrainCheckpointStore((dir_ / "ckpt").string(), 0).save(c);
  }

  fs::path dir_;
  std::string model_;
  std::vector<NamedTensor> tensors_;
};

TEST_F(ExportCli, F32FromStepDirIsBitIdentical) {
  const std::string step = save(7, "[target]\npath = \"" + model_ + "\"");
  const fs::path out = dir_ / "hf";
  const CliRun r = run("export --checkpoint " + step + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("step 7"), std::string::npos) << r.out;
  const auto f = read_st(out / "model.safetensors");
  ASSERT_EQ(f.size(), tensors_.size());
  for (const NamedTensor& t : tensors_) {
    ASSERT_TRUE(f.count(t.name)) << t.name;
    const StTensor& info = f.at(t.name);
    EXPECT_EQ(info.dtype, "F32");
    EXPECT_EQ(info.shape, t.tensor.shape());
    ASSERT_EQ(info.bytes.size(), size_t(t.tensor.size()) * 4);
    EXPECT_EQ(std::memcmp(info.bytes.data(), t.tensor.data(), info.bytes.size()), 0) << t.name;
  }
  std::ifstream cfg(out / "config.json");
  const auto j = nlohmann::json::parse(cfg);
  EXPECT_EQ(j["torch_dtype"], "float32");
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_TRUE(fs::exists(out / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(out / "tokenizer.model"));
}

TEST_F(ExportCli, BF16FromLatestSharded) {
  save(3, "[target]\npath = \"" + model_ + "\"");
  save(5, "[target]\npath = \"" + model_ + "\"");
  const fs::path out = dir_ / "hf16";
  const CliRun r = run("export --checkpoint " + (dir_ / "ckpt").string() + " --out " + out.string() +
                    " --dtype bf16 --max-shard-size 30000");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("step 5"), std::string::npos) << r.out;
  // The index names every tensor's shard.
  std::ifstream idx(out / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(idx);
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  std::set<std::string> shards;
  for (const NamedTensor& t : tensors_) {
    ASSERT_TRUE(index["weight_map"].contains(t.name)) << t.name;
    const std::string shard = index["weight_map"][t.name];
    shards.insert(shard);
    const auto f = read_st(out / shard);
    ASSERT_TRUE(f.count(t.name)) << t.name;
    const StTensor& info = f.at(t.name);
    EXPECT_EQ(info.dtype, "BF16");
    ASSERT_EQ(info.bytes.size(), size_t(t.tensor.size()) * 2);
    for (int64_t i = 0; i < t.tensor.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, info.bytes.data() + 2 * i, 2);
      ASSERT_EQ(h, f32_to_bf16(t.tensor[i])) << t.name;
    }
  }
  EXPECT_GT(shards.size(), 1u);
}

TEST_F(ExportCli, Errors) {
  CliRun r = run("export --checkpoint " + (dir_ / "none").string() + " --out " + (dir_ / "x").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("no such checkpoint directory"), std::string::npos) << r.out;
  fs::create_directories(dir_ / "empty");
  r = run("export --checkpoint " + (dir_ / "empty").string() + " --out " + (dir_ / "x").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("holds no training checkpoint"), std::string::npos) << r.out;
  const std::string step = save(1, "[target]\npath = \"" + (dir_ / "gone").string() + "\"");
  r = run("export --checkpoint " + step + " --out " + (dir_ / "x").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("config.json is not there"), std::string::npos) << r.out;
  // The missing file is named once, as a path (it read "D: ... (the job names D as the target)").
  const std::string gone = (dir_ / "gone").string();
  EXPECT_NE(r.out.find(gone + "/config.json: "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(gone), r.out.rfind(gone)) << r.out;
  r = run("export --checkpoint " + step + " --out " + (dir_ / "x").string() + " --dtype f16");
  EXPECT_NE(r.code, 0);
}

TEST_F(ExportCli, DamagedCheckpointIsRefusedNamingTheFileAndTheOneThatVerifies) {
  // One flipped bit in HDF5's metadata crashed export inside libhdf5; and given the checkpoint
  // directory, export fell back to an older step with only a warning. Now it refuses, naming the
  // damaged file and the newest checkpoint that verifies, and writes nothing.
  const std::string target = "[target]\npath = \"" + model_ + "\"";
  const std::string step1 = save(1, target), step2 = save(2, target);
  const fs::path f = fs::path(step2) / "state.h5";
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(96);  // in the root group's object header, past the superblock
    char c;
    io.read(&c, 1);
    c = char(c ^ 0x10);
    io.seekp(96);
    io.write(&c, 1);
  }
  const fs::path out = dir_ / "out";
  CliRun r = run("export --checkpoint " + (dir_ / "ckpt").string() + " --out " + out.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(f.string() + ": fails its checksum"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--checkpoint " + step1), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  r = run("export --checkpoint " + step2 + " --out " + out.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("fails its checksum"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  r = run("export --checkpoint " + step1 + " --out " + out.string());  // the one that verifies
  EXPECT_EQ(r.code, 0) << r.out;
}

}  // namespace
}  // namespace fusellm
