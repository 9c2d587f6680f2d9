// `fusellm train` with a GPT-NeoX, an MPT and a GPT-2 student, as the demo of issue 13 trains its
// sources: from random init (Hugging Face's from_config(): model/init_weights.hpp),
// CLM only ([distill] fusion = "none", lambda = 1), on the demo corpus with the demo's byte-level
// BPE tokenizer. The loss falls over a few steps; the trainer's export and `fusellm export` of the
// last checkpoint write the family's own layout (GPT-2's Conv1D [in, out], GPT-NeoX's per-head
// query_key_value), which the C++ loader reads back to the trained checkpoint's logits bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <Kokkos_Core.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fusellm/data/corpus.hpp"
#include "fusellm/io/safetensors_writer.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/model/init_weights.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/train/train_checkpoint.hpp"
#include "fusellm/train/trainer.hpp"
#include "run_fusellm.hpp"
#include "fusellm/io/hf_config.hpp"
#include "unit/model/model_inputs.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {

const std::string kDemo = FUSELLM_SOURCE_DIR "/examples/demo";

// Tiny configs of each family over the demo tokenizer's 8192 ids.
const std::map<std::string, nlohmann::json>& configs() {
  static const std::map<std::string, nlohmann::json> c = {
      {"gpt_neox",
       {{"model_type", "gpt_neox"}, {"vocab_size", 8192}, {"hidden_size", 64}, {"intermediate_size", 128},
        {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"rotary_pct", 0.25}, {"max_position_embeddings", 128},
        {"use_parallel_residual", true}, {"hidden_act", "gelu"}, {"layer_norm_eps", 1e-5},
        {"tie_word_embeddings", false}}},
      {"mpt",
       {{"model_type", "mpt"}, {"vocab_size", 8192}, {"d_model", 64}, {"n_heads", 4}, {"n_layers", 2},
        {"expansion_ratio", 4}, {"max_seq_len", 128}, {"no_bias", true}, {"learned_pos_emb", false},
        {"layer_norm_epsilon", 1e-5}, {"attn_config", {{"alibi", true}}}}},
      {"gpt2",
       {{"model_type", "gpt2"}, {"vocab_size", 8192}, {"n_embd", 64}, {"n_layer", 2}, {"n_head", 4},
        {"n_positions", 128}, {"layer_norm_epsilon", 1e-5}}},
  };
  return c;
}

// config.json and a model.safetensors of Hugging Face's initialization (model/init_weights.hpp,
// what `fusellm init` writes).
void write_random_model(const fs::path& dir, const nlohmann::json& config) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << config.dump(2);
  const model::Arch arch = model::read_arch(dir.string());
  const model::DecoderParams params = model::plan_decoder_params(arch, model::base_prefix(arch));
  const std::vector<float> flat = model::init_parameters(arch, params, 0.02, 11);
  write_safetensors((dir / "model.safetensors").string(), model::fresh_checkpoint_entries(arch, params, flat));
}

class TrainFamily : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fusellm_train_" + GetParam() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream f(dir_ / "corpus.jsonl", std::ios::binary);
    const auto docs = read_corpus(kDemo + "/corpus.jsonl");
    for (size_t i = 0; i < 6 && i < docs.size(); ++i)
      f << nlohmann::json{{"text", docs[i].text.substr(0, 600)}}.dump() << "\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string job() const {
    const std::string p = (dir_ / "job.toml").string();
    std::ofstream(p) << "[job]\nname = \"family\"\nseed = 3\noutput_dir = \"" << (dir_ / "run").string() << "\"\n\n"
                     << "[target]\npath = \"" << (dir_ / "init").string() << "\"\ntokenizer = \"" << kDemo
                     << "/neox\"\n\n"
                     << "[corpus]\npath = \"" << (dir_ / "corpus.jsonl").string() << "\"\nmax_len = 64\nmargin = 16\n\n"
                     << "[distill]\nfusion = \"none\"\nlambda = 1.0\n\n"
                     << "[optim]\nlr = 3e-3\nschedule = \"constant\"\nwarmup_steps = 0\n\n"
                     << "[train]\nglobal_batch = 2\nmax_steps = 10\nlog_interval = 1\n\n"
                     << "[checkpoint]\ninterval = 5\nkeep = 0\n";
    return p;
  }
  fs::path dir_;
};

TEST_P(TrainFamily, ClmLossFallsAndTheExportLoads) {
  write_random_model(dir_ / "init", configs().at(GetParam()));
  const JobConfig j = load_job(job());
  TrainOptions o;
  o.progress = false;
  o.export_dir = (dir_ / "export").string();
  const TrainResult r = train(j, o);
  ASSERT_GE(r.steps.size(), 8u);
  // From random init the first loss is about ln(8192) = 9.01; a few steps learn the token frequencies.
  const double first = r.steps.front().loss;
  double last = 0;
  for (size_t i = r.steps.size() - 3; i < r.steps.size(); ++i) last += r.steps[i].loss / 3;
  EXPECT_NEAR(first, std::log(8192.0), 0.5);
  EXPECT_LT(last, first - 0.5) << "the CLM loss did not fall: " << first << " -> " << last;
  for (const auto& s : r.steps) EXPECT_EQ(s.loss, s.clm);
  std::printf("[ %s ] %zu steps, loss %.4f -> %.4f (mean of the last 3)\n", GetParam().c_str(), r.steps.size(), first,
              last);

  // `fusellm export` of the last checkpoint writes what the trainer's export wrote.
  const fs::path ckdir = dir_ / "run" / "checkpoints";
  const auto cli = fusellm::testing::run_fusellm("export --checkpoint " + ckdir.string() + " --out " +
                                                 (dir_ / "cli_export").string());
  ASSERT_EQ(cli.code, 0) << cli.out;
  EXPECT_EQ(read_text_file((dir_ / "export" / "model.safetensors").string()),
            read_text_file((dir_ / "cli_export" / "model.safetensors").string()));

  // The exported directory loads, and gives the trained checkpoint's logits.
  const auto ck = TrainCheckpointStore(ckdir.string(), 0).load_latest();
  ASSERT_TRUE(ck.has_value());
  model::TrainableModel trained = model::TrainableModel::load((dir_ / "init").string());
  for (const NamedTensor& t : ck->model) {
    model::Parameter& p = trained.parameter(t.name);
    ASSERT_EQ(p.value.shape(), t.tensor.shape()) << t.name;
    std::copy(t.tensor.span().begin(), t.tensor.span().end(), p.value.span().begin());
  }
  const auto exported = CausalLM::load((dir_ / "cli_export").string());
  const std::vector<int32_t> ids = {5, 900, 17, 4000, 23, 8191, 0, 77, 1500, 3};
  const Tensor a = trained.forward(ids), b = exported->forward(ids);
  EXPECT_TRUE(fusellm::testing::bit_equal(a, b));
}

INSTANTIATE_TEST_SUITE_P(Families, TrainFamily, ::testing::Values("gpt_neox", "mpt", "gpt2"));

}  // namespace
