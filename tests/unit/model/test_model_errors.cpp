// Checkpoints that disagree with their config, or configs the families cannot run, are Errors
// that say what is wrong: the tensor, the expected and found shapes, the field, the supported
// values. Bad checkpoints are made in a temporary directory from a fixture, by editing
// config.json or rewriting model.safetensors with a small writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
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

// A checkpoint that transformers' MptForCausalLM saved with expansion_ratio 2 has 4 * d_model
// MLP units (its MptMLP ignores the field); MosaicML's MPT code, which fusellm follows, expects
// d_model * expansion_ratio. The error says where the expected width comes from.
TEST(ModelErrors, MptMlpWidthComesFromExpansionRatio) {
  TempModel m("mpt_alibi");  // d_model 64, weights of 256 MLP units
  m.edit_config([](json& j) { j["expansion_ratio"] = 2; });
  const std::string e = load_error(m.dir());
  EXPECT_HAS(e, "transformer.blocks.0.ffn.up_proj.weight");
  EXPECT_HAS(e, "[256, 64]");  // found
  EXPECT_HAS(e, "[128, 64]");  // expected
  EXPECT_HAS(e, "expansion_ratio 2 * d_model 64");
  EXPECT_HAS(e, "4 * d_model = 256");
}

Tensor logits_of(const std::string& dir) {
  const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5};
  return CausalLM::load(dir)->forward(ids);
}

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::equal(a.span().begin(), a.span().end(), b.span().begin());
}

// MosaicML's ffn_config.ffn_hidden_size replaces d_model * expansion_ratio (resolve_ffn_hidden_size).
TEST(ModelErrors, MptFfnHiddenSizeOverridesExpansionRatio) {
  const std::string fixture = "mpt_mosaicml_bias5_ffn120";  // d_model 48, expansion_ratio 2.5
  TempModel m(fixture);
  m.edit_config([](json& j) {
    j["expansion_ratio"] = 4;
    j["ffn_config"] = {{"ffn_type", "mptmlp"}, {"ffn_hidden_size", 120}};
  });
  EXPECT_TRUE(same(logits_of(m.dir()), logits_of((kFixtures / fixture).string())));
}

// The LayerNorm epsilon is MosaicML's norm_eps or transformers' layer_norm_epsilon, whichever
// the config has (both, equal, is fine).
TEST(ModelErrors, MptNormEpsIsRead) {
  TempModel hf("mpt_alibi"), mosaic("mpt_alibi"), both("mpt_alibi");
  hf.edit_config([](json& j) { j["layer_norm_epsilon"] = 0.5; });
  mosaic.edit_config([](json& j) {
    j.erase("layer_norm_epsilon");
    j["norm_eps"] = 0.5;
  });
  both.edit_config([](json& j) {
    j["layer_norm_epsilon"] = 0.5;
    j["norm_eps"] = 0.5;
  });
  const Tensor a = logits_of(hf.dir());
  EXPECT_FALSE(same(a, logits_of((kFixtures / "mpt_alibi").string())));
  EXPECT_TRUE(same(a, logits_of(mosaic.dir())));
  EXPECT_TRUE(same(a, logits_of(both.dir())));
}

// A config with every field llm-foundry's MPTConfig writes, at the values published MPTs use
// (mpt-7b-8k, mpt-30b style), loads and gives the same logits: no refusal of a harmless field.
TEST(ModelErrors, MptPublishedConfigFieldsLoad) {
  TempModel m("mpt_alibi");
  m.edit_config([](json& j) {
    j["attn_config"] = {{"attn_type", "multihead_attention"}, {"attn_pdrop", 0.0}, {"attn_impl", "torch"},
                        {"qk_ln", false}, {"qk_gn", false}, {"fused_qkv", true}, {"clip_qkv", nullptr},
                        {"softmax_scale", nullptr}, {"prefix_lm", false}, {"attn_uses_sequence_id", false},
                        {"sliding_window_size", -1}, {"attn_logit_softcapping", nullptr}, {"alibi", true},
                        {"alibi_bias_max", 8}, {"rope", false}, {"rope_theta", 10000}, {"rope_impl", "dail"},
                        {"kv_n_heads", 1}, {"attn_temperature_tuning", {{"floor_scale", 8192}, {"attn_scale", 0.0}}}};
    j["ffn_config"] = {{"ffn_type", "mptmlp"}, {"ffn_act_fn", {{"name", "gelu"}, {"approximate", "none"}}},
                       {"fc_type", {{"name", "torch"}}}};
    j["learned_pos_emb"] = true;  // MosaicML turns it off when alibi is on
    j["logit_scale"] = nullptr;
    j["norm_eps"] = 1e-5;
    j["fc_type"] = {{"name", "torch"}};
    j["use_pad_tok_in_ffn"] = true;
    j["block_overrides"] = nullptr;
    j["final_logit_softcapping"] = nullptr;
    j["embedding_fraction"] = 1.0;
    j["init_device"] = "cpu";
  });
  EXPECT_TRUE(same(logits_of(m.dir()), logits_of((kFixtures / "mpt_alibi").string())));
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
    {"mpt_alibi", "expansion_ratio", 4.3, {"'expansion_ratio'", "275.2", "not a positive integer"}},
    // MPT fields (MosaicML's MPTConfig) that change the computation and are not implemented.
    {"mpt_alibi", "attn_config.qk_gn", true, {"'qk_gn'", "not supported"}},
    {"mpt_alibi", "attn_config.rope", true, {"'rope'", "not supported"}},
    {"mpt_alibi", "attn_config.fused_qkv", false, {"'fused_qkv'", "not supported"}},
    {"mpt_alibi", "attn_config.sliding_window_size", 16, {"'sliding_window_size'", "16 is not supported"}},
    {"mpt_alibi", "attn_config.attn_logit_softcapping", 30.0, {"'attn_logit_softcapping'", "not supported"}},
    {"mpt_alibi", "attn_config.attn_temperature_tuning", json{{"attn_scale", 0.1}}, {"'attn_scale'", "not supported"}},
    {"mpt_alibi", "attn_config.alibi_bias_max", 0, {"'alibi_bias_max'", "positive"}},
    {"mpt_alibi", "attention_bias", true, {"'attention_bias'", "not supported"}},
    {"mpt_alibi", "logit_scale", "sqrt_d_model", {"'logit_scale'", "inv_sqrt_d_model"}},
    {"mpt_alibi", "logit_scale", 0, {"'logit_scale'", "0"}},
    {"mpt_alibi", "attn_config.prefix_lm", true, {"'prefix_lm'", "not supported"}},
    {"mpt_alibi", "attn_config.softmax_scale", 0, {"'softmax_scale'", "positive"}},
    {"mpt_alibi", "embedding_fraction", 0, {"'embedding_fraction'", "(0, 1]"}},
    {"mpt_alibi", "learned_pos_emb", "yes", {"'learned_pos_emb'", "true or false"}},
    {"llama_gqa", "quantization_config", json{{"quant_method", "gptq"}}, {"'quantization_config'", "quantized"}},
    {"mpt_alibi", "final_logit_softcapping", 30.0, {"'final_logit_softcapping'", "not supported"}},
    {"mpt_alibi", "block_overrides", json{{"order", json::array()}}, {"'block_overrides'", "not supported"}},
    {"mpt_alibi", "head_dim", 32, {"'head_dim'", "d_model / n_heads = 16"}},
    {"mpt_alibi", "ffn_config.ffn_type", "mptglu", {"'ffn_type'", "\"mptglu\" is not supported", "mptmlp"}},
    {"mpt_alibi", "ffn_config.ffn_act_fn", json{{"name", "silu"}}, {"'ffn_act_fn'", "not supported"}},
    {"mpt_alibi", "ffn_config.ffn_hidden_size", 0, {"'ffn_hidden_size'", "positive"}},
    {"mpt_alibi", "norm_eps", 1e-6, {"'norm_eps'", "layer_norm_epsilon"}},
    {"neox_parallel", "rotary_pct", 2.0, {"'rotary_pct'", "(0, 1]"}},
    {"neox_parallel", "use_parallel_residual", 1, {"'use_parallel_residual'", "true or false"}},
    {"gpt2_tied", "n_embd", 64.5, {"'n_embd'", "integer"}},
    {"gpt2_tied", "activation_function", "gelu_10", {"gelu_10", "supported"}},
};

INSTANTIATE_TEST_SUITE_P(Fields, ModelBadConfig, ::testing::ValuesIn(kBadFields));

}  // namespace
}  // namespace fusellm
