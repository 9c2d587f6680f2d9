// Checkpoints that disagree with their config, or configs the families cannot run, are Errors
// that say what is wrong: the tensor, the expected and found shapes, the field, the supported
// values. Bad checkpoints are made in a temporary directory from a fixture, by editing
// config.json or rewriting model.safetensors with a small writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/model.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixtures = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "models";

// A copy of a fixture in a fresh temporary directory, removed at the end of the test.
class TempModel {
 public:
  explicit TempModel(const std::string& fixture) {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("fusellm_model_errors_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const auto& e : fs::directory_iterator(kFixtures / fixture))
      if (e.is_regular_file()) fs::copy_file(e.path(), dir_ / e.path().filename());
  }
  ~TempModel() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  TempModel(const TempModel&) = delete;
  TempModel& operator=(const TempModel&) = delete;

  std::string dir() const { return dir_.string(); }

  void edit_config(const std::function<void(json&)>& f) const {
    json j;
    {
      std::ifstream in(dir_ / "config.json");
      in >> j;
    }
    f(j);
    std::ofstream(dir_ / "config.json") << j.dump(2);
  }

  struct Raw {
    std::string name, dtype;
    Shape shape;
    std::vector<std::byte> data;
  };

  // Rewrites model.safetensors through `f`, which may drop, add or change tensors.
  void edit_weights(const std::function<void(std::vector<Raw>&)>& f) const {
    std::vector<Raw> ts;
    {
      const SafetensorsFile sf((dir_ / "model.safetensors").string());
      for (const auto& [name, t] : sf.tensors())
        ts.push_back({name, std::string(dtype_name(t.dtype)), t.shape, {t.bytes.begin(), t.bytes.end()}});
    }
    f(ts);
    json h = json::object();
    uint64_t off = 0;
    for (const Raw& t : ts) {
      h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.data.size()}}};
      off += t.data.size();
    }
    std::string header = h.dump();
    header.append((8 - header.size() % 8) % 8, ' ');
    std::ofstream out(dir_ / "model.safetensors", std::ios::binary | std::ios::trunc);
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
    out << header;
    for (const Raw& t : ts) out.write(reinterpret_cast<const char*>(t.data.data()), std::streamsize(t.data.size()));
  }

 private:
  fs::path dir_;
};

// The Error message of loading `dir`, or a test failure if it loads.
std::string load_error(const std::string& dir) {
  try {
    CausalLM::load(dir);
  } catch (const Error& e) {
    std::printf("  error: %s\n", e.what());
    return e.what();
  }
  ADD_FAILURE() << dir << " loaded without error";
  return "";
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

TEST(ModelErrors, MissingTensorIsNamed) {
  TempModel m("llama_gqa");
  m.edit_weights([](std::vector<TempModel::Raw>& ts) {
    std::erase_if(ts, [](const TempModel::Raw& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  const std::string e = load_error(m.dir());
  EXPECT_HAS(e, "model.layers.1.mlp.up_proj.weight");
  EXPECT_HAS(e, "of layer 1");
}

TEST(ModelErrors, UntiedHeadMustBePresent) {
  TempModel m("llama_gqa");
  m.edit_weights([](std::vector<TempModel::Raw>& ts) {
    std::erase_if(ts, [](const TempModel::Raw& t) { return t.name == "lm_head.weight"; });
  });
  EXPECT_HAS(load_error(m.dir()), "lm_head.weight");
}

TEST(ModelErrors, BiasRequiredByConfigIsMissing) {
  // qwen2 always has q/k/v biases.
  TempModel m("mistral_swa_fp16");
  m.edit_config([](json& j) { j["model_type"] = "qwen2"; });
  EXPECT_HAS(load_error(m.dir()), "model.layers.0.self_attn.q_proj.bias");
}

TEST(ModelErrors, ConfigShapeDisagreesWithTensor) {
  TempModel m("llama_gqa");
  m.edit_config([](json& j) { j["intermediate_size"] = 100; });
  const std::string e = load_error(m.dir());
  EXPECT_HAS(e, "model.layers.0.mlp.gate_proj.weight");
  EXPECT_HAS(e, "[96, 64]");   // found
  EXPECT_HAS(e, "[100, 64]");  // expected from config.json
}

TEST(ModelErrors, TensorShapeDisagreesWithConfig) {
  TempModel m("llama_gqa");
  m.edit_weights([](std::vector<TempModel::Raw>& ts) {
    for (auto& t : ts)
      if (t.name == "model.layers.0.self_attn.k_proj.weight") {  // [32, 64] -> [64, 32]
        t.shape = {64, 32};
      }
  });
  const std::string e = load_error(m.dir());
  EXPECT_HAS(e, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_HAS(e, "[64, 32]");
  EXPECT_HAS(e, "[32, 64]");
}

TEST(ModelErrors, Conv1DShapeIsCheckedInStoredLayout) {
  TempModel m("gpt2_tied");
  m.edit_config([](json& j) { j["n_inner"] = 200; });
  const std::string e = load_error(m.dir());
  EXPECT_HAS(e, "transformer.h.0.mlp.c_fc.weight");
  EXPECT_HAS(e, "[64, 200]");  // GPT-2's Conv1D stores [in, out]
}

TEST(ModelErrors, UnknownModelTypeListsSupported) {
  TempModel m("llama_gqa");
  m.edit_config([](json& j) { j["model_type"] = "bert"; });
  const std::string e = load_error(m.dir());
  EXPECT_HAS(e, "\"bert\"");
  EXPECT_HAS(e, "config.json");
  for (const char* t : {"llama", "mistral", "qwen2", "mpt", "gpt_neox", "gpt2"}) EXPECT_HAS(e, t);
  EXPECT_EQ(CausalLM::supported_model_types(),
            (std::vector<std::string>{"llama", "mistral", "qwen2", "mpt", "gpt_neox", "gpt2"}));
}

TEST(ModelErrors, MissingModelType) {
  TempModel m("llama_gqa");
  m.edit_config([](json& j) { j.erase("model_type"); });
  EXPECT_HAS(load_error(m.dir()), "model_type");
}

TEST(ModelErrors, MissingConfigOrDirectory) {
  TempModel m("llama_gqa");
  fs::remove(fs::path(m.dir()) / "config.json");
  EXPECT_HAS(load_error(m.dir()), "config.json");
  EXPECT_HAS(load_error("/nonexistent/fusellm/model"), "/nonexistent/fusellm/model");
}

struct BadField {
  const char* fixture;
  const char* key;  // "a.b" edits a nested object
  json value;
  std::vector<std::string> expect;  // substrings of the message
};

class ModelBadConfig : public ::testing::TestWithParam<BadField> {};

TEST_P(ModelBadConfig, IsAnErrorNamingTheField) {
  const BadField& b = GetParam();
  TempModel m(b.fixture);
  m.edit_config([&](json& j) {
    const std::string key = b.key;
    const auto dot = key.find('.');
    if (dot == std::string::npos)
      j[key] = b.value;
    else
      j[key.substr(0, dot)][key.substr(dot + 1)] = b.value;
  });
  const std::string e = load_error(m.dir());
  for (const std::string& s : b.expect) EXPECT_HAS(e, s);
}

const BadField kBadFields[] = {
    {"llama_gqa", "hidden_size", "64", {"'hidden_size'", "integer"}},
    {"llama_gqa", "num_hidden_layers", nullptr, {"'num_hidden_layers'", "missing"}},
    {"llama_gqa", "num_attention_heads", 0, {"'num_attention_heads'", "positive"}},
    {"llama_gqa", "num_key_value_heads", 3, {"'num_key_value_heads'", "does not divide"}},
    {"llama_gqa", "rms_norm_eps", "small", {"'rms_norm_eps'", "number"}},
    {"llama_gqa", "tie_word_embeddings", "yes", {"'tie_word_embeddings'", "true or false"}},
    {"llama_gqa", "hidden_act", "tanhshrink", {"tanhshrink", "silu", "gelu_new"}},
    {"llama_gqa", "rope_scaling", json{{"rope_type", "yarn"}, {"factor", 4.0}}, {"yarn", "linear, dynamic, llama3"}},
    {"llama_gqa", "rope_scaling", json{{"type", "linear"}}, {"'factor'", "missing"}},
    {"llama_gqa", "rope_scaling", "linear", {"'rope_scaling'", "object"}},
    {"mpt_alibi", "attn_config.qk_ln", true, {"'qk_ln'", "not supported"}},
    {"mpt_alibi", "attn_config.alibi", false, {"'alibi'", "not supported"}},
    {"mpt_alibi", "attn_config.clip_qkv", "big", {"'clip_qkv'", "number"}},
    {"mpt_alibi", "attn_config.attn_type", "multiquery_attention", {"multiquery_attention", "multihead_attention"}},
    {"mpt_alibi", "attn_config", 3, {"'attn_config'", "object"}},
    {"mpt_alibi", "no_bias", false, {"'no_bias'", "not supported"}},
    {"mpt_alibi", "expansion_ratio", 4.3, {"'expansion_ratio'"}},
    {"neox_parallel", "rotary_pct", 2.0, {"'rotary_pct'", "(0, 1]"}},
    {"neox_parallel", "use_parallel_residual", 1, {"'use_parallel_residual'", "true or false"}},
    {"gpt2_tied", "n_embd", 64.5, {"'n_embd'", "integer"}},
    {"gpt2_tied", "activation_function", "gelu_10", {"gelu_10", "supported"}},
};

INSTANTIATE_TEST_SUITE_P(Fields, ModelBadConfig, ::testing::ValuesIn(kBadFields));

}  // namespace
}  // namespace fusellm
