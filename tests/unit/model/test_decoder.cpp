// The one decoder: its parameter table over one flat buffer holds exactly the checkpoint's
// tensors (Hugging Face names and shapes, q/k/v and gate/up adjacent so that each is one matrix),
// the save switch does not change the logits (the student's forward is the teachers'), and every
// operation goes through the backend it is given (the seam a CUDA backend implements).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/decoder.hpp"
#include "unit/model/model_inputs.hpp"
#include "fusellm/model/trainable_model.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
const fs::path kModels = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "models";
const fs::path kGrads = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "grads";

using fusellm::testing::bit_equal;
using fusellm::testing::some_ids;

model::Arch arch_of(const fs::path& dir) {
  const HFConfig c = HFConfig::load(dir.string());
  const std::string type = c.get_string("model_type");
  if (type == "mpt") return model::mpt_arch(c);
  return model::llama_arch(c);
}

class DecoderTable : public ::testing::TestWithParam<std::string> {};

// Separate q/k/v (llama, qwen2 with biases, tied), fused QKV (mpt): the table is the checkpoint.
TEST_P(DecoderTable, HoldsTheCheckpointsTensors) {
  const fs::path dir = kModels / GetParam();
  const Checkpoint ck(dir.string());
  const model::Decoder d(arch_of(dir), ck);
  const ParamTable& t = d.parameter_table();
  EXPECT_EQ(t.total(), ck.num_parameters());
  EXPECT_EQ(size_t(t.size()), ck.names().size());
  int64_t next = 0;
  for (const ParamEntry& e : t.entries()) {
    EXPECT_EQ(e.offset, next) << e.name;  // no gaps, in table order
    next += e.size;
    const Tensor want = ck.load_f32(e.name);
    EXPECT_EQ(want.shape(), e.shape) << e.name;
    EXPECT_EQ(std::memcmp(want.data(), d.parameters().data() + e.offset, sizeof(float) * size_t(e.size)), 0) << e.name;
  }
  // [q; k; v] and [gate; up] are one matrix each: adjacent in the buffer.
  const model::LayerRegions& L = d.regions().layers.at(1);
  const model::Arch& a = d.arch();
  EXPECT_EQ(L.qkv.rows, (a.heads + 2 * a.kv_heads) * a.head_dim);
  EXPECT_EQ(L.in.rows, a.gated_mlp ? 2 * a.intermediate : a.intermediate);
  if (a.qkv_layout == model::QkvLayout::Separate) {
    EXPECT_EQ(L.qkv.offset, t.find("model.layers.1.self_attn.q_proj.weight")->offset);
    EXPECT_EQ(L.in.offset, t.find("model.layers.1.mlp.gate_proj.weight")->offset);
    EXPECT_EQ(t.find("model.layers.1.mlp.up_proj.weight")->offset, L.in.offset + a.intermediate * a.hidden);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecoderTable,
                         ::testing::Values("llama_gqa", "llama_bias_tied_bf16", "qwen2_dynamic_sharded", "mpt_alibi"));

// The student's forward (saving activations for backward) is the teachers' forward, bit for bit.
TEST(Decoder, SaveSwitchKeepsTheLogits) {
  for (const char* name : {"llama_gqa", "llama_tied_mqa", "qwen2_bias", "neox_parallel", "neox_sequential", "mpt_alibi",
                           "mpt_clip", "gpt2_tied"}) {
    SCOPED_TRACE(name);
    const fs::path dir = kGrads / name;
    model::TrainableModel student = model::TrainableModel::load(dir.string());
    const auto teacher = CausalLM::load(dir.string());
    const std::vector<int32_t> ids = some_ids(student.arch().vocab, 70);
    std::vector<int32_t> docs(ids.size(), 0);
    for (size_t i = 30; i < docs.size(); ++i) docs[i] = i < 50 ? 1 : 2;
    EXPECT_TRUE(bit_equal(student.forward(ids, docs), teacher->forward(ids, docs)));
    EXPECT_TRUE(bit_equal(student.forward(ids), teacher->forward(ids)));
  }
}

// The parameters in the checkpoint's layout (what export writes) are the checkpoint's tensors bit
// for bit: GPT-2's Conv1D transposed back, GPT-NeoX's query_key_value regrouped per head back.
TEST(Decoder, CheckpointEntriesAreTheCheckpoint) {
  for (const char* name : {"llama_gqa", "neox_parallel", "mpt_clip", "gpt2_tied"}) {
    SCOPED_TRACE(name);
    const fs::path dir = kGrads / name;
    model::TrainableModel m = model::TrainableModel::load(dir.string());
    const Checkpoint ck(dir.string());
    int n = 0;
    for (const SafetensorsEntry& e : m.checkpoint_entries()) {
      const Tensor want = ck.load_f32(e.name);
      ASSERT_EQ(e.shape, want.shape()) << e.name;
      Tensor got(e.shape);
      if (e.produce)
        e.produce(got.span());
      else
        std::copy(e.data.begin(), e.data.end(), got.data());
      EXPECT_TRUE(bit_equal(got, want)) << e.name;
      ++n;
    }
    EXPECT_EQ(n, m.parameter_table().size());
  }
}

// The named views are the two flat buffers.
TEST(Decoder, ParametersAreViewsOfTheFlatBuffers) {
  model::TrainableModel m = model::TrainableModel::load((kGrads / "llama_gqa").string());
  int64_t n = 0;
  for (const model::Parameter& p : m.parameters()) {
    const ParamEntry* e = m.parameter_table().find(p.name);
    ASSERT_NE(e, nullptr) << p.name;
    EXPECT_EQ(p.value.data(), m.parameter_buffer().data() + e->offset);
    EXPECT_EQ(p.grad.data(), m.gradient_buffer().data() + e->offset);
    EXPECT_EQ(p.value.shape(), e->shape);
    n += p.value.size();
  }
  EXPECT_EQ(n, m.num_parameters());
  EXPECT_EQ(int64_t(m.gradient_buffer().size()), n);
}

// A backend that forwards every operation to the CPU one and counts the calls by name.
class CountingBackend final : public model::Backend {
 public:
  mutable std::map<std::string, int> calls;
  const char* name() const override { return "counting"; }
  std::unique_ptr<PassScope> begin_pass() const override { return cpu().begin_pass(); }
  bool host_memory() const override { return cpu().host_memory(); }
  std::unique_ptr<Memory> allocate(size_t bytes) const override { return cpu().allocate(bytes); }
  void copy_in(void* d, const void* s, size_t n) const override { cpu().copy_in(d, s, n); }
  void copy_out(void* d, const void* s, size_t n) const override { cpu().copy_out(d, s, n); }
  void zero(void* d, size_t n) const override { cpu().zero(d, n); }
  void add(std::span<const float> x, std::span<float> y) const override { cpu().add(x, y); }
#define FORWARD(op, params, args)      \
  void op params const override {      \
    ++calls[#op];                      \
    cpu().op args;                     \
  }
  FORWARD(embed, (std::span<const int32_t> i, model::ConstMatView t, std::span<const int32_t> p, model::ConstMatView pt,
                  model::MatView x), (i, t, p, pt, x))
  FORWARD(copy, (model::ConstMatView s, model::MatView d), (s, d))
  FORWARD(rmsnorm, (model::ConstMatView x, std::span<const float> w, float e, model::MatView y), (x, w, e, y))
  FORWARD(layernorm, (model::ConstMatView x, std::span<const float> w, std::span<const float> b, float e,
                      model::MatView y), (x, w, b, e, y))
  FORWARD(linear, (model::ConstMatView x, model::ConstMatView w, std::span<const float> b, model::MatView y, bool a),
          (x, w, b, y, a))
  FORWARD(clamp, (model::MatView x, float c), (x, c))
  FORWARD(apply_rope, (const model::RopeTable& t, model::MatView x, int64_t c, int64_t h, int64_t d), (t, x, c, h, d))
  FORWARD(causal_attention, (model::ConstMatView q, std::span<const int32_t> ds, const model::AttentionShape& s,
                             model::MatView o), (q, ds, s, o))
  FORWARD(activation, (model::Activation a, model::MatView x), (a, x))
  FORWARD(activation, (model::Activation a, model::ConstMatView x, model::MatView o), (a, x, o))
  FORWARD(gated_activation, (model::Activation a, model::MatView gu), (a, gu))
  FORWARD(gated_activation, (model::Activation a, model::ConstMatView gu, model::MatView o), (a, gu, o))
  FORWARD(linear_backward_input, (model::ConstMatView dy, model::ConstMatView w, model::MatView dx, bool a),
          (dy, w, dx, a))
  FORWARD(linear_backward_weight, (model::ConstMatView dy, model::ConstMatView x, model::MatView dw), (dy, x, dw))
  FORWARD(bias_backward, (model::ConstMatView dy, std::span<float> db), (dy, db))
  FORWARD(rmsnorm_backward, (model::ConstMatView x, std::span<const float> w, float e, model::ConstMatView dy,
                             model::MatView dx, std::span<float> dw, bool a), (x, w, e, dy, dx, dw, a))
  FORWARD(layernorm_backward, (model::ConstMatView x, std::span<const float> w, float e, model::ConstMatView dy,
                               model::MatView dx, std::span<float> dw, std::span<float> db, bool a),
          (x, w, e, dy, dx, dw, db, a))
  FORWARD(activation_backward, (model::Activation a, model::ConstMatView p, model::MatView dh), (a, p, dh))
  FORWARD(clamp_backward, (model::ConstMatView y, float c, model::MatView dy), (y, c, dy))
  FORWARD(apply_rope_backward, (const model::RopeTable& t, model::MatView dx, int64_t c, int64_t h, int64_t d),
          (t, dx, c, h, d))
  FORWARD(swiglu_backward, (model::ConstMatView gu, model::ConstMatView dh, model::MatView dgu), (gu, dh, dgu))
  FORWARD(causal_attention_backward, (model::ConstMatView q, model::ConstMatView o, model::ConstMatView d,
                                      std::span<const int32_t> ds, const model::AttentionShape& s,
                                      model::MatView dq), (q, o, d, ds, s, dq))
  FORWARD(embedding_backward, (std::span<const int32_t> i, model::ConstMatView dx, model::MatView dt), (i, dx, dt))
#undef FORWARD

 private:
  static const model::Backend& cpu() { return model::cpu_backend(); }
};

TEST(Decoder, EveryOperationGoesThroughTheBackend) {
  const fs::path dir = kGrads / "llama_gqa";
  const Checkpoint ck(dir.string());
  const CountingBackend counting;
  const model::Decoder on_cpu(arch_of(dir), ck), seen(arch_of(dir), ck, counting);
  const std::vector<int32_t> ids = some_ids(on_cpu.arch().vocab, 20);
  model::SavedActivations saved;
  const Tensor logits = seen.forward(ids, {}, &saved);
  EXPECT_TRUE(bit_equal(logits, on_cpu.forward(ids)));
  const int64_t layers = on_cpu.arch().layers;
  EXPECT_EQ(counting.calls["linear"], 4 * layers + 1);  // qkv, o, [gate; up], down per layer, and the head
  EXPECT_EQ(counting.calls["causal_attention"], layers);
  std::vector<float> grads(size_t(seen.parameter_table().total())), dlogits(size_t(logits.size()), 1e-3f);
  seen.backward(saved, dlogits, grads);
  EXPECT_EQ(counting.calls["linear_backward_weight"], 4 * layers + 1);
  EXPECT_EQ(counting.calls["embedding_backward"], 1);
}

}  // namespace
}  // namespace fusellm
